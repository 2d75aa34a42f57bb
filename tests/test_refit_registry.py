"""`trainlab study --refit-best --register NAME`: the refit model lands in MLflow's Model Registry, its
`models:/NAME/1` URI is printed, and a fresh Python process runs the README's "Use the best model" code:
plain MLflow loads it and it predicts a test batch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.integration

DOCUMENT = {
    "seed_everything": 7,
    "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [32]}},
    "data": {"class_path": "Digits"},
    "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
    "trainer": {"max_epochs": 2, "enable_progress_bar": False},
    "tracking": {"experiment": "registry"},
    "study": {"name": "reg", "metric": "val/acc", "direction": "maximize", "n_trials": 1},
    "search_space": {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
}

def _trainlab(folder, *args):
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "trainlab", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_refit_is_registered_and_loads_in_a_fresh_process(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(DOCUMENT))
    result = _trainlab(tmp_path, "study", "study.yaml", "--refit-best", "--register", "digits-mlp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered model: models:/digits-mlp/1" in result.stdout, result.stdout
    assert "Pickle" not in result.stderr, "MLflow's pickle warning is explained in refit.py and filtered"

    section = (REPO / "README.md").read_text().split("### Use the best model", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    loaded = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    accuracy = float(loaded.stdout.split("accuracy")[-1])
    assert accuracy > 0.3, loaded.stdout  # ten classes, two epochs: a trained model, not chance (0.1)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version("digits-mlp", "1")
    refit = client.get_run(version.run_id)
    assert refit.data.tags["trainlab.kind"] == "refit" and version.tags["trainlab.study"] == "reg"
    assert "no artifacts at artifact path" not in result.stderr, "registered from MLflow 3's logged model, not a run path"

    # The same command again (the study is done): --register alone refits and adds the next version.
    again = _trainlab(tmp_path, "study", "study.yaml", "--register", "digits-mlp")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "registered model: models:/digits-mlp/2" in again.stdout, again.stdout
    assert client.get_model_version("digits-mlp", "2").run_id != version.run_id


def test_a_bad_model_name_is_refused_before_anything_exists(cli, workdir):
    (workdir / "study.yaml").write_text(yaml.safe_dump(DOCUMENT))
    result = cli("study", "study.yaml", "--register", "a/b")
    assert result.code == 2 and result.err.startswith("trainlab: error: --register: got 'a/b'; expected a non-empty model name"), result
    assert len(result.err.strip().splitlines()) == 1
    assert not (workdir / "mlflow.db").exists() and not (workdir / "optuna_journal.log").exists()
