"""A study's trials are ordinary runs, so each carries its gradient verdict: a user can filter trials by it."""

from __future__ import annotations

import pytest
import yaml

from conftest import STUDIES

pytestmark = pytest.mark.integration


def test_study_trials_carry_the_gradient_verdict_and_can_be_filtered_by_it(cli, workdir, mlflow_client):
    document = yaml.safe_load((STUDIES / "gradients_sigmoid_deep.yaml").read_text())
    document["trainer"]["max_epochs"] = 2
    document["study"] = {"name": "activations", "metric": "val/acc", "direction": "maximize", "n_trials": 2, "sampler": "grid", "pruner": "none"}
    document["search_space"] = {"model.init_args.activation": {"choices": ["sigmoid", "relu"]}}
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = cli("study", path)
    assert result.code == 0, result

    experiment = mlflow_client.get_experiment_by_name(document["tracking"]["experiment"])
    trials = [r for r in mlflow_client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2
    assert all(r.data.tags.get("trainlab.gradients") in ("vanishing", "exploding", "healthy") for r in trials)
    # What the MLflow UI's search box does with: tags.`trainlab.gradients` = 'vanishing'
    vanishing = mlflow_client.search_runs([experiment.experiment_id], filter_string="tags.`trainlab.gradients` = 'vanishing'")
    assert [r.data.params["model.init_args.activation"] for r in vanishing] == ["sigmoid"]
