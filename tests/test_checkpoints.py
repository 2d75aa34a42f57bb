"""Issue 19, item 4: trainlab's own checkpoints load with torch.load(weights_only=True); nothing else is unpickled."""

from __future__ import annotations

import fractions
import os
import pickle

import pytest
import torch


def test_own_checkpoint_with_jsonargparse_numbers_loads_with_weights_only(tmp_path):
    from trainlab.types import PositiveInt, UnitFraction

    from trainlab.training.checkpoints import load_own_checkpoint

    path = str(tmp_path / "own.ckpt")
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"hidden": PositiveInt(8), "dropout": UnitFraction(0.1)}}, path)
    with pytest.raises(pickle.UnpicklingError):  # plain torch refuses them: they must be allowed, one by one
        torch.load(path, weights_only=True)
    loaded = load_own_checkpoint(path)
    assert loaded["hyper_parameters"] == {"hidden": 8, "dropout": 0.1}
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_a_checkpoint_that_asks_to_import_anything_else_is_refused(tmp_path):
    from trainlab.training.checkpoints import load_own_checkpoint

    path = str(tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": {"ratio": fractions.Fraction(1, 3)}}, path)
    with pytest.raises(pickle.UnpicklingError, match="Fraction"):
        load_own_checkpoint(path)


@pytest.mark.integration
def test_a_run_tests_its_best_checkpoint_and_logs_weights_that_load_safely(cli, fast_digits, mlflow_client, workdir):
    result = cli("train", fast_digits, "trainer.max_epochs=1")
    assert result.code == 0, result
    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("digits-mlp").experiment_id])[0]
    assert "test/acc" in run.data.metrics  # the test stage loaded the best checkpoint with weights_only=True
    local = mlflow_client.download_artifacts(run.info.run_id, "checkpoints", str(workdir))
    best = torch.load(os.path.join(local, "best.pt"), weights_only=True)  # no allow-list needed
    assert set(best) == {"state_dict", "epoch", "monitor", "score"}
