"""Resume: a `trainlab train` killed with kill -9 continues with `--resume RUN_ID` and ends bit-identical to the
same run never interrupted (CPU, fixed seed): every metric at every epoch, the kept weights, the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Dropout (draws from the global RNG), a step scheduler (state outside the weights) and shuffled batches.
EXPERIMENT = """\
seed_everything: 7
model:
  class_path: MLPClassifier
  init_args: {hidden_sizes: [64], dropout: 0.3}
data:
  class_path: Digits
  init_args: {batch_size: 64}
optimizer:
  class_path: torch.optim.SGD
  init_args: {lr: 0.05, momentum: 0.9}
lr_scheduler:
  class_path: torch.optim.lr_scheduler.StepLR
  init_args: {step_size: 3, gamma: 0.5}
trainer: {max_epochs: 30, enable_progress_bar: false}
tracking: {experiment: resume}
"""


def _trainlab(folder: Path, *args: str, wait: bool = True):
    env = {**os.environ, "TRAINLAB_CHECKPOINT_EVERY_S": "0", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "trainlab", *args]
    if not wait:
        return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def _kill_after_a_checkpoint(folder: Path, signal_number: int = signal.SIGKILL, min_epoch: int = 1) -> str:
    """Start the run, wait until it has written a resume checkpoint (at ``min_epoch`` or later) and trained on
    a little, kill -9 it."""
    process = _trainlab(folder, "train", "exp.yaml", wait=False)
    deadline = time.monotonic() + 300
    while _checkpoint_epoch(folder) < min_epoch:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(0.4)
    assert process.poll() is None, "the run ended before it could be killed: make it longer"
    process.send_signal(signal_number)
    _, err = process.communicate()
    if signal_number == signal.SIGTERM:
        assert process.returncode == 143 and "terminated by SIGTERM" in err, err
    return next(folder.glob("checkpoints/*/resume.ckpt")).parent.name


def _diagnoses(run) -> dict[str, str | None]:
    """The verdicts the diagnostics tag a run with (trainlab.diagnostics) and the description they write."""
    keys = ("trainlab.overfitting", "trainlab.warning", "trainlab.gradients", "trainlab.gradients.layers", "mlflow.note.content")
    return {key: run.data.tags.get(key) for key in keys}


def _checkpoint_epoch(folder: Path) -> int:
    """The epoch the run's resume checkpoint starts, -1 while there is none (or it is being written)."""
    import torch

    import trainlab.types  # noqa: F401  (the checkpoint's hyper-parameters are of its types)

    found = list(folder.glob("checkpoints/*/resume.ckpt"))
    try:
        return int(torch.load(found[0], map_location="cpu", weights_only=False)["epoch"]) if found else -1
    except Exception:
        return -1


def _best_weights(client, run_id: str):
    import torch

    path = client.download_artifacts(run_id, "checkpoints/best.pt", tempfile.mkdtemp())
    return torch.load(path, map_location="cpu", weights_only=True)


# The MLP above, and a CNN with batch norm (running statistics: state outside the parameters) on the same data.
CNN_MODEL = """\
model:
  class_path: CNNClassifier
  init_args: {channels: [8, 16], hidden_size: 32, dropout: 0.2, batch_norm: true}
"""
# A user's datamodule whose DataLoader has worker processes, each drawing noise per sample (a worker-side
# augmentation): resumed at an epoch's start, with the RNG state the workers' seeds are drawn from, it is exact.
WORKER_DATA = """\
import lightning as L
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset, TensorDataset


class NoisyDigits(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(self.x.shape[1]), self.y[i]


class DigitsThroughWorkers(L.LightningDataModule):
    def __init__(self, batch_size: int = 64, num_workers: int = 2):
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers

    def setup(self, stage=None):
        x, y = load_digits(return_X_y=True)
        x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
        self.train_set, self.val_set = NoisyDigits(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=256)
"""
WORKERS = (
    EXPERIMENT.replace("dropout: 0.3}", "dropout: 0.3, num_classes: 10, input_shape: [64]}")
    .replace("class_path: Digits\n  init_args: {batch_size: 64}", "class_path: worker_data.DigitsThroughWorkers\n  init_args: {batch_size: 64, num_workers: 2}")
    .replace("max_epochs: 30", "max_epochs: 12")
)
MODELS = {
    "mlp": EXPERIMENT,
    "cnn": EXPERIMENT.replace(EXPERIMENT[EXPERIMENT.index("model:"):EXPERIMENT.index("data:")], CNN_MODEL).replace("max_epochs: 30", "max_epochs: 12"),
    "dataloader-workers": WORKERS,
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_run_killed_with_kill_9_resumes_in_the_same_run_and_ends_bit_identical(tmp_path, model):
    import torch
    from mlflow import MlflowClient

    from trainlab.reproduce.recorded import metric_histories

    (tmp_path / "exp.yaml").write_text(MODELS[model])
    (tmp_path / "worker_data.py").write_text(WORKER_DATA)
    whole = _trainlab(tmp_path, "train", "exp.yaml")
    assert whole.returncode == 0, whole.stderr

    run_id = _kill_after_a_checkpoint(tmp_path)
    resumed = _trainlab(tmp_path, "train", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert f"run {run_id} FINISHED" in resumed.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("resume").experiment_id
    runs = client.search_runs([experiment], order_by=["start_time ASC"])
    assert [run.info.run_id for run in runs][1] == run_id and len(runs) == 2, "the resume continued the killed run, no new run"
    uninterrupted, continued = runs
    assert continued.info.status == "FINISHED"
    assert continued.data.tags["trainlab.resumed"].startswith("1 times, last from epoch ")

    expected, got = metric_histories(client, uninterrupted), metric_histories(client, continued)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name  # every epoch, bit for bit
        steps = [m.step for m in client.get_metric_history(run_id, name)]
        assert len(steps) == len(set(steps)), f"{name}: an epoch was written twice"
    assert _diagnoses(continued) == _diagnoses(uninterrupted)
    first, second = _best_weights(client, uninterrupted.info.run_id), _best_weights(client, run_id)
    assert first["epoch"] == second["epoch"]
    assert all(torch.equal(first["state_dict"][key], second["state_dict"][key]) for key in first["state_dict"])
    assert not (tmp_path / "checkpoints" / run_id).exists(), "a finished run's checkpoint folder is removed"
    if model == "mlp":  # a resumed run reproduces as any run: re-run uninterrupted, compared epoch by epoch
        reproduced = _trainlab(tmp_path, "reproduce", run_id)
        assert reproduced.returncode == 0 and "MATCH: all" in reproduced.stdout and "bit-identical" in reproduced.stdout, reproduced.stdout[-2000:]


def _one_line_exit_2(result) -> str:
    # The first command after a kill -9 also says that it ended the dead process's run KILLED (trainlab.tracking.reaper).
    lines = [line for line in result.stderr.strip().splitlines() if "was left RUNNING" not in line]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_resume_may_raise_max_epochs_and_keeps_the_diagnoses_and_the_run_reproduces(tmp_path):
    """Killed after the epoch where validation loss bottoms out (3 for studies/overfitting_digits.yaml), resumed to
    train 4 epochs longer: the overfitting verdict still names epoch 3, and an uninterrupted re-run matches."""
    from mlflow import MlflowClient

    from conftest import STUDIES

    experiment = (STUDIES / "overfitting_digits.yaml").read_text().replace("max_epochs: 12", "max_epochs: 30\n  enable_progress_bar: false")
    (tmp_path / "exp.yaml").write_text(experiment)
    run_id = _kill_after_a_checkpoint(tmp_path, min_epoch=5)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    for change, expected in [("trainer.max_epochs=2", "more than the"), ("model.init_args.dropout=0.5", "but trainer.max_epochs=N")]:
        line = _one_line_exit_2(_trainlab(tmp_path, "train", "--resume", run_id, change))
        assert change.split("=")[0] in line or run_id in line, line
        assert expected in line, line
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED" and "trainlab.resumed" not in killed.data.tags, "bad input changed nothing"

    resumed = _trainlab(tmp_path, "train", "--resume", run_id, "trainer.max_epochs=34")
    assert resumed.returncode == 0 and f"run {run_id} FINISHED" in resumed.stdout, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.data.tags["trainlab.max_epochs"] == "34" and run.data.tags["trainlab.resumed"].endswith(", max_epochs 30 → 34")
    assert run.data.params["trainer.max_epochs"] == "30", "params keep what the run started with"
    for name in ("val/loss", "train/loss"):
        assert [m.step for m in client.get_metric_history(run_id, name)] == list(range(34)), name  # each epoch once
    assert run.data.tags["trainlab.overfitting"] == "true" and run.data.metrics["overfit_epoch"] == 3, "judged on all 34 epochs"

    reproduced = _trainlab(tmp_path, "reproduce", run_id)
    assert reproduced.returncode == 0 and "MATCH: all" in reproduced.stdout and "bit-identical" in reproduced.stdout, reproduced.stdout[-3000:]
    (rerun,) = client.search_runs([run.info.experiment_id], f"tags.`trainlab.reproduces` = '{run_id}'")
    assert [m.step for m in client.get_metric_history(rerun.info.run_id, "val/loss")] == list(range(34))
    assert _diagnoses(rerun) == _diagnoses(run)


def test_resume_refuses_an_unknown_run_and_a_finished_one_in_one_line(tmp_path):
    from mlflow import MlflowClient

    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("max_epochs: 30", "max_epochs: 2"))
    assert _trainlab(tmp_path, "train", "exp.yaml").returncode == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    finished = client.search_runs([client.get_experiment_by_name("resume").experiment_id])[0].info.run_id

    for run_id, expected in [("0123456789abcdef", "the id of a run"), (finished, "did not finish")]:
        result = _trainlab(tmp_path, "train", "--resume", run_id)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "--resume" in lines[0] and run_id in lines[0] and expected in lines[0], lines
    assert len(client.search_runs([client.get_experiment_by_name("resume").experiment_id])) == 1


def test_a_trial_whose_worker_was_killed_is_continued_by_the_next_worker_in_the_same_run(tmp_path):
    import optuna
    import yaml
    from mlflow import MlflowClient

    from trainlab.studies.storage import open_storage

    document = yaml.safe_load(EXPERIMENT)
    document["study"] = {"name": "continue", "metric": "val/acc", "direction": "maximize", "n_trials": 2,
                         "sampler": {"type": "random", "seed": 0}, "pruner": "none"}
    document["search_space"] = {"model.init_args.dropout": {"low": 0.1, "high": 0.3}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    journal = str(tmp_path / "optuna_journal.log")

    first = _trainlab(tmp_path, "study", "study.yaml", wait=False)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.2)
        if not os.path.exists(journal):
            continue
        trials = optuna.load_study(study_name="continue", storage=open_storage(journal)).get_trials()
        run_id = trials[0].user_attrs.get("mlflow_run_id") if trials else None
        if run_id and (tmp_path / "checkpoints" / run_id / "resume.ckpt").exists() and len(trials[0].intermediate_values) >= 3:
            victim = trials[0]
    first.send_signal(signal.SIGKILL)
    first.communicate()

    again = _trainlab(tmp_path, "study", "study.yaml")
    assert again.returncode == 0, again.stderr
    assert "continuing trial 0 at epoch" in again.stderr

    trials = optuna.load_study(study_name="continue", storage=open_storage(journal)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], "continued, not failed and replaced"
    assert trials[0].params == victim.params and trials[0].user_attrs["mlflow_run_id"] == victim.user_attrs["mlflow_run_id"]
    assert sorted(trials[0].intermediate_values) == list(range(30)), "every epoch reported once"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trial_runs = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
    assert len(trial_runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [(r.info.run_id, r.info.status) for r in runs]
    continued = next(r for r in trial_runs if r.info.run_id == victim.user_attrs["mlflow_run_id"])
    assert continued.data.tags["trainlab.resumed"].startswith("1 times")
    steps = [m.step for m in client.get_metric_history(continued.info.run_id, "val/acc")]
    assert sorted(steps) == list(range(30))


def test_a_run_stopped_by_sigterm_ends_killed_keeps_its_checkpoint_and_resumes(tmp_path):
    """SIGTERM writes the diagnostics' verdicts on the partial run; the resumed run replaces them: its
    description and verdict tags equal those of the same file trained uninterrupted."""
    from mlflow import MlflowClient

    from conftest import STUDIES

    # Overfits from epoch 3 (see the test above): the partial run already has a verdict and a paragraph to replace.
    experiment = (STUDIES / "overfitting_digits.yaml").read_text().replace("max_epochs: 12", "max_epochs: 30\n  enable_progress_bar: false")
    (tmp_path / "exp.yaml").write_text(experiment)
    whole = _trainlab(tmp_path, "train", "exp.yaml")
    assert whole.returncode == 0, whole.stderr
    run_id = _kill_after_a_checkpoint(tmp_path, signal.SIGTERM, min_epoch=5)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert (tmp_path / "checkpoints" / run_id / "resume.ckpt").exists(), "SIGTERM keeps the resume checkpoint"
    assert "Overfitting from epoch 3" in killed.data.tags["mlflow.note.content"], "the partial run was judged on SIGTERM"

    resumed = _trainlab(tmp_path, "train", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "val/acc")) == list(range(30))
    (uninterrupted,) = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run_id]
    assert _diagnoses(run) == _diagnoses(uninterrupted), "the partial run's verdicts and paragraphs were replaced"
    assert "trainlab.status_reason" not in run.data.tags, "the SIGTERM that ended the partial run is not the finished run's reason"
