"""`trainlab reproduce`: bit-identical re-runs, edited configs and changed data caught, unknown runs refused."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from conftest import all_runs

pytestmark = pytest.mark.integration

# A datamodule reading a CSV the test writes (64 pixel columns + label), to change data behind a config's back.
CSV_DATAMODULE = '''
import numpy as np
import torch

from trainlab.datamodules import InMemoryDataModule


class CsvDigits(InMemoryDataModule):
    def __init__(self, path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = path

    def load_splits(self):
        table = np.loadtxt(self.path, delimiter=",", dtype=np.float32)
        x, y = torch.from_numpy(table[:, :-1]), torch.from_numpy(table[:, -1]).long()
        train, test = self._carve((x, y), 0.2)
        return {"train": train, "test": test}
'''


def _train(cli, path, *overrides) -> str:
    result = cli("train", path, "trainer.max_epochs=2", *overrides)
    assert result.code == 0, result
    return re.search(r"run ([0-9a-f]{32}) FINISHED", result.out).group(1)


def _artifact_dir(client, run_id) -> Path:
    return Path(urlparse(client.get_run(run_id).info.artifact_uri).path)


def _history(client, run_id, name):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


def test_run_reproduces_bit_identically_and_logs_the_verdict(cli, fast_digits, tracking_uri, mlflow_client):
    original = _train(cli, fast_digits)
    assert mlflow_client.get_run(original).data.tags["trainlab.reproducibility"] == "exact"

    dry = cli("reproduce", original, "--dry-run")
    assert dry.code == 0, dry
    assert "audit: recorded vs now" in dry.out and "verdict:" in dry.out
    assert len(all_runs(tracking_uri)) == 1  # the dry run trains nothing

    result = cli("reproduce", original)
    assert result.code == 0, result
    assert "MATCH: all" in result.out and "bit-identical" in result.out
    runs = all_runs(tracking_uri)
    assert len(runs) == 2
    rerun = next(r for r in runs if r.info.run_id != original)
    assert rerun.info.experiment_id == mlflow_client.get_run(original).info.experiment_id
    tags = rerun.data.tags
    assert tags["trainlab.reproduces"] == original
    assert tags["trainlab.reproduction.verdict"] == "match"
    # Bit-identical is demanded when nothing changed; a tree edited meanwhile (code row in the audit) relaxes it.
    exact = "verdict: exact reproduction expected" in result.out
    assert exact or "code: " in result.out, result.out
    assert tags["trainlab.reproduction.tolerance"] == ("0" if exact else "0.02")
    for name in ("train/loss", "val/loss", "val/acc", "test/acc"):
        assert _history(mlflow_client, rerun.info.run_id, name) == _history(mlflow_client, original, name), name
    logged = {a.path for a in mlflow_client.list_artifacts(rerun.info.run_id, "reproduction")}
    assert logged == {"reproduction/report.txt", "reproduction/report.html", "reproduction/comparison.csv"}
    table = (_artifact_dir(mlflow_client, rerun.info.run_id) / "reproduction" / "comparison.csv").read_text()
    assert "val/loss" in table and "identical" in table


def test_edited_config_artifact_is_reported_and_does_not_match(cli, fast_digits, mlflow_client):
    original = _train(cli, fast_digits)
    config_file = _artifact_dir(mlflow_client, original) / "config.yaml"
    document = yaml.safe_load(config_file.read_text())
    assert document["optimizer"]["init_args"]["lr"] == 0.002
    document["optimizer"]["init_args"]["lr"] = 0.01
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))

    result = cli("reproduce", original)
    assert result.code == 1, result
    edited = next(line for line in result.out.splitlines() if "config: optimizer.init_args.lr" in line)
    assert "0.002" in edited and "0.01" in edited and "different experiment" in edited
    assert "MISMATCH: config.yaml was edited after the run" in result.out


def test_changed_data_is_reported_and_does_not_match(cli, workdir, monkeypatch, fast_digits):
    import numpy as np
    from sklearn.datasets import load_digits

    monkeypatch.syspath_prepend(str(workdir))
    (workdir / "csv_digits.py").write_text(CSV_DATAMODULE)
    digits = load_digits()
    table = np.column_stack([digits.data, digits.target])
    csv = workdir / "digits.csv"
    np.savetxt(csv, table, delimiter=",", fmt="%g")
    original = _train(cli, fast_digits, "data.class_path=csv_digits.CsvDigits", f"data.init_args={{path: {csv}, batch_size: 64}}")

    table[:300, :-1] = 16 - table[:300, :-1]  # same file, same config: 300 images inverted
    np.savetxt(csv, table, delimiter=",", fmt="%g")
    dry = cli("reproduce", original, "--dry-run")
    assert dry.code == 1, dry
    result = cli("reproduce", original)
    assert result.code == 1, result
    changed = [line for line in result.out.splitlines() if line.strip().startswith("data: ")]
    assert changed and all("different experiment" in line for line in changed)
    assert any(line.strip().startswith("data: train") for line in changed)
    assert "MISMATCH: the data differ from what the run used" in result.out and "curves diverge from epoch 0" in result.out


def test_statistical_run_is_labelled_and_audited_as_such(cli, fast_digits, mlflow_client, tracking_uri):
    original = _train(cli, fast_digits, "trainer.deterministic=false")
    tags = mlflow_client.get_run(original).data.tags
    assert tags["trainlab.reproducibility"] == "statistical"
    assert "deterministic algorithms off" in tags["trainlab.reproducibility.reasons"]
    result = cli("reproduce", original, "--dry-run")
    assert result.code == 0, result
    assert "only statistical reproduction expected: recorded as statistical (deterministic algorithms off" in result.out


def test_unknown_run_id_gives_one_line_and_exit_2(cli, tracking_uri):
    from trainlab.tracking.run_record import RunRecord

    RunRecord.create(tracking_uri, experiment="digits-mlp", run_name="some-run", tags={}).end("FINISHED")
    result = cli("reproduce", "0123456789abcdef0123456789abcdef")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "RUN_ID" in result.err and "0123456789abcdef0123456789abcdef" in result.err
    assert len(all_runs(tracking_uri)) == 1


def test_run_without_recorded_config_cannot_be_reproduced(cli, tracking_uri):
    from trainlab.tracking.run_record import RunRecord

    bare = RunRecord.create(tracking_uri, experiment="elsewhere", run_name="not-trainlab", tags={})
    bare.end("FINISHED")
    result = cli("reproduce", bare.run_id, "--tracking-uri", tracking_uri)
    assert result.code == 2
    assert result.err.count("\n") == 1 and "config.yaml" in result.err and bare.run_id in result.err
    assert len(all_runs(tracking_uri)) == 1


def test_bad_arguments_give_exit_2_and_create_nothing(cli, workdir):
    missing = cli("reproduce", "abc", "--tracking-uri", f"sqlite:///{workdir / 'nothing.db'}")
    assert missing.code == 2 and "--tracking-uri" in missing.err and missing.err.count("\n") == 1
    assert not (workdir / "nothing.db").exists()
    negative = cli("reproduce", "abc", "--tolerance", "-1")
    assert negative.code == 2 and "--tolerance" in negative.err and "-1" in negative.err
