"""A user's OWN Lightning code, the way a new user brings it: a folder outside the project with its own
``models/`` package, metric names of its own (``val_acc``, ``train_loss``), its own
``configure_optimizers`` and no ``test_step``; trained, searched, refit and reproduced with the installed
``trainlab`` command run from that folder, with no PYTHONPATH and no trainlab conventions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import all_runs

pytestmark = pytest.mark.integration

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))

USER_MODULE = '''
"""A user's logistic regression on wine: plain Lightning, nothing of trainlab's."""
import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_wine
from torch.utils.data import DataLoader, TensorDataset


class WineData(L.LightningDataModule):
    def __init__(self, batch_size: int = 32, val_share: float = 0.25):
        super().__init__()
        self.batch_size, self.val_share = batch_size, val_share

    def setup(self, stage=None):
        x, y = load_wine(return_X_y=True)
        x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
        y = torch.tensor(y)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        cut = int(len(x) * (1 - self.val_share))
        self.train_set = TensorDataset(x[order[:cut]], y[order[:cut]])
        self.val_set = TensorDataset(x[order[cut:]], y[order[cut:]])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


class WineClassifier(L.LightningModule):
    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(13, 3)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''

EXPERIMENT = {
    "seed_everything": 7,
    "model": {"class_path": "models.wine.WineClassifier", "init_args": {"lr": 0.05}},
    "data": {"class_path": "models.wine.WineData"},
    "trainer": {"max_epochs": 4},
    "tracking": {"experiment": "wine"},
}


@pytest.fixture
def project(tmp_path) -> Path:
    """The user's folder: models/wine.py (a package named like ours, on purpose) and wine.yaml."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "wine.py").write_text(USER_MODULE)
    (tmp_path / "wine.yaml").write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    return tmp_path


def trainlab(folder: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The installed command, run from the user's folder with no PYTHONPATH, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    return subprocess.run([TRAINLAB, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def only_run(folder: Path):
    runs = all_runs(f"sqlite:///{folder / 'mlflow.db'}")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def write_experiment(folder: Path, name: str, **sections) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({**EXPERIMENT, **sections}, sort_keys=False))
    return path


def test_own_module_trains_from_its_folder_with_its_own_metric_names(project):
    result = trainlab(project, "train", "wine.yaml", "monitor.metric=val_acc")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(project)
    assert run.info.status == "FINISHED"
    assert {"train_loss", "val_loss", "val_acc", "best/val_acc"} <= set(run.data.metrics)
    assert "test skipped" in result.stdout + result.stderr  # the module has no test_step: said, not failed
    assert run.data.tags["trainlab.test"].startswith("skipped")
    assert run.data.tags["trainlab.monitor"] == "val_acc (max)"


def test_nothing_monitored_keeps_the_last_epoch_and_never_fails_a_good_run(project):
    result = trainlab(project, "train", "wine.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(project)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainlab.monitor"].startswith("none")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    best = client.download_artifacts(run.info.run_id, "checkpoints/best.pt", str(project))
    import torch

    assert torch.load(best, weights_only=True)["epoch"] == 3  # the last of 4 epochs


def test_user_code_is_captured_and_an_edit_is_named_by_the_audit(project):
    assert trainlab(project, "train", "wine.yaml", "monitor.metric=val_acc").returncode == 0
    run = only_run(project)
    code = json.loads(Path(MlflowClientFor(project).download_artifacts(run.info.run_id, "environment.json", str(project))).read_text())["user_code"]
    assert any(entry["file"].endswith("models/wine.py") for entry in code["files"]), code
    same = trainlab(project, "reproduce", run.info.run_id)
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-2000:]
    assert "MATCH" in same.stdout

    wine = project / "models" / "wine.py"
    wine.write_text(wine.read_text().replace("lr: float = 0.05):", "lr: float = 0.05):  # tuned").replace("self.net = torch.nn.Linear(13, 3)", "self.net = torch.nn.Linear(13, 3)\n        torch.nn.init.zeros_(self.net.weight)"))
    audit = trainlab(project, "reproduce", run.info.run_id, "--dry-run")
    assert "models/wine.py" in audit.stdout, audit.stdout
    rerun = trainlab(project, "reproduce", run.info.run_id)
    assert rerun.returncode == 1
    mismatch = [line for line in rerun.stdout.splitlines() if line.startswith("MISMATCH")]
    assert mismatch and "models/wine.py" in mismatch[0], rerun.stdout[-3000:]


def MlflowClientFor(folder: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def test_own_module_is_searched_with_pruning_then_refit_and_the_model_loads_elsewhere(project):
    write_experiment(
        project,
        "study.yaml",
        study={"metric": "val_acc", "direction": "maximize", "n_trials": 4, "sampler": {"type": "tpe", "seed": 1},
               "pruner": {"type": "median", "n_warmup_steps": 1}},
        search_space={"model.init_args.lr": {"low": 1.0e-3, "high": 0.5, "log": True}},
    )
    result = trainlab(project, "study", "study.yaml", "--refit-best", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = all_runs(f"sqlite:///{project / 'mlflow.db'}")
    trials = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
    assert len(trials) == 4 and all(r.info.status in ("FINISHED", "KILLED") for r in trials)
    assert all(r.data.tags["trainlab.monitor"] == "val_acc (max)" for r in trials)
    refit = next(r for r in runs if r.data.tags.get("trainlab.kind") == "refit")
    assert refit.info.status == "FINISHED"
    uri = f"runs:/{refit.info.run_id}/model"
    assert uri in result.stdout
    load = (
        "import mlflow, torch; mlflow.set_tracking_uri('sqlite:///mlflow.db');"
        f"m = mlflow.pytorch.load_model('{uri}'); print(m(torch.zeros(2, 13)).shape)"
    )
    loaded = subprocess.run([sys.executable, "-c", load], cwd=project, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "torch.Size([2, 3])" in loaded.stdout


def test_a_study_metric_the_module_never_logs_fails_one_trial_then_stops(project):
    write_experiment(
        project, "bad_metric.yaml",
        study={"metric": "val_f1", "direction": "maximize", "n_trials": 5},
        search_space={"model.init_args.lr": {"low": 1.0e-3, "high": 0.5, "log": True}},
    )
    result = trainlab(project, "study", "bad_metric.yaml")
    assert result.returncode == 2
    assert "val_f1" in result.stderr and "val_acc" in result.stderr  # names the metric and what is logged
    assert "Traceback" not in result.stderr
    trials = [r for r in all_runs(f"sqlite:///{project / 'mlflow.db'}") if r.data.tags.get("trainlab.kind") == "trial"]
    assert len(trials) == 1 and trials[0].info.status == "FAILED"


@pytest.mark.parametrize(
    "model, expected",
    [
        ({"class_path": "mymodels.Nope"}, "mymodels"),
        ({"class_path": "torch.nn.Linear", "init_args": {"in_features": 2, "out_features": 1}}, "LightningModule"),
    ],
)
def test_a_class_path_that_cannot_be_used_is_one_line(project, model, expected):
    write_experiment(project, "bad.yaml", model=model)
    result = trainlab(project, "train", "bad.yaml")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 3 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (project / "mlflow.db").exists() or not all_runs(f"sqlite:///{project / 'mlflow.db'}")


@pytest.mark.parametrize("model", ["BoringModel", "DemoModel"])
def test_lightning_own_demo_modules_finish(tmp_path, model):
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({
        "seed_everything": 1,
        "model": {"class_path": f"lightning.pytorch.demos.boring_classes.{model}"},
        "data": {"class_path": "lightning.pytorch.demos.boring_classes.BoringDataModule"},
        "trainer": {"max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 2},
    }))
    result = trainlab(tmp_path, "train", "demo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_run(tmp_path).info.status == "FINISHED"


LIGHTNING_CLI = textwrap.dedent('''
    from lightning.pytorch.cli import LightningCLI
    import lightning as L
    LightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True)
''')


def test_lightning_cli_configs_work_both_ways(project):
    (project / "cli.py").write_text(LIGHTNING_CLI)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(project)  # LightningCLI imports from sys.path; `python cli.py` puts the folder there anyway
    dump = subprocess.run(
        [sys.executable, "cli.py", "fit", "--model", "models.wine.WineClassifier", "--data", "models.wine.WineData",
         "--trainer.max_epochs", "2", "--seed_everything", "3", "--print_config"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert dump.returncode == 0, dump.stderr[-3000:]
    (project / "dumped.yaml").write_text(dump.stdout)
    trained = trainlab(project, "train", "dumped.yaml")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = only_run(project)
    assert run.info.status == "FINISHED" and run.data.params["trainer.max_epochs"] == "2"

    exported = trainlab(project, "export", run.info.run_id, "-o", "exported.yaml")
    assert exported.returncode == 0, exported.stderr[-3000:]
    fit = subprocess.run([sys.executable, "cli.py", "fit", "--config", "exported.yaml", "--trainer.max_epochs", "1",
                          "--trainer.logger", "false"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]


def test_optimizer_sections_are_injected_as_lightning_cli_does_and_refused_for_a_module_with_its_own(project):
    own = "    def configure_optimizers(self):\n        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)\n"
    assert own in USER_MODULE
    (project / "models" / "plain.py").write_text(USER_MODULE.replace(own, ""))
    write_experiment(
        project, "plain.yaml",
        model={"class_path": "models.plain.WineClassifier"}, data={"class_path": "models.plain.WineData"},
        optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}},
        # torch's ReduceLROnPlateau names no metric: it follows the run's monitor
        lr_scheduler={"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau", "init_args": {"patience": 0}},
        monitor={"metric": "val_loss"}, test=False,
    )
    result = trainlab(project, "train", "plain.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(project)
    assert run.info.status == "FINISHED" and run.data.metrics["optim/momentum"] == 0.9  # the file's SGD, not a default
    assert run.data.tags["trainlab.monitor"] == "val_loss (min)" and run.data.tags["trainlab.test"] == "skipped: test: false in the experiment file"

    refused = trainlab(project, "train", "wine.yaml", "optimizer.class_path=torch.optim.Adam")
    assert refused.returncode == 2 and "configure_optimizers" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
