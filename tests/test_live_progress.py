"""Live progress as a user sees it: a line per epoch when the output is a log, Lightning's progress bar with
the loss and the metric in a terminal (a real pseudo-terminal), and a study showing its running trials' epochs."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest
import yaml

from conftest import STUDIES

pytestmark = pytest.mark.integration

EPOCH_LINE = re.compile(r"^(?:trial (\d+)  )?epoch (\d+)/(\d+)  train/loss (\d+\.\d{4})  val/acc (\d\.\d{4}) \(best (\d\.\d{4})\)  \d+\.\d s$", re.M)


def _experiment(folder, epochs: int, study: bool = False):
    """The demo experiment file as shipped (progress bar not turned off), shortened."""
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    assert "enable_progress_bar" not in document["trainer"], "the demo shows progress"
    document["trainer"]["max_epochs"] = epochs
    if study:
        document["study"]["n_trials"] = 2
        document["study"]["jobs"] = 1  # one worker: its trials' lines in order
    else:
        document.pop("study")
        document.pop("search_space")
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _env():
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_train_prints_one_line_per_epoch_into_a_log(tmp_path):
    path = _experiment(tmp_path, epochs=3)
    result = subprocess.run([sys.executable, "-m", "trainlab", "train", str(path)], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = EPOCH_LINE.findall(result.stderr)
    assert [(epoch, total) for _, epoch, total, *_ in lines] == [("1", "3"), ("2", "3"), ("3", "3")], result.stderr
    assert "\r" not in result.stderr + result.stdout, "no progress bar in a log"

    # The lines show what MLflow recorded for those epochs, and the best so far.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    recorded = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val/acc"), key=lambda m: m.step)]
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]
    assert [float(line[4]) for line in lines] == pytest.approx(recorded, abs=5e-5)
    assert [float(line[3]) for line in lines] == pytest.approx(losses, abs=5e-5)
    assert [float(line[5]) for line in lines] == pytest.approx([max(recorded[: i + 1]) for i in range(3)], abs=5e-5)


def test_train_in_a_terminal_shows_lightnings_progress_bar_with_loss_and_metric(tmp_path):
    path = _experiment(tmp_path, epochs=2)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal 160 columns wide
    process = subprocess.Popen([sys.executable, "-m", "trainlab", "train", str(path)], cwd=tmp_path, env=_env(),
                               stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            process.kill()
            pytest.fail(f"no output for 300 s: {output[-2000:]!r}")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the command is done
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0, output[-3000:]
    text = output.decode(errors="replace")
    frames = text.replace("\n", "\r").split("\r")
    bars = [f for f in frames if f.startswith("epoch 2/2") and "%|" in f]
    assert bars, text[-3000:]
    assert re.search(r"train/loss=\d\.\d+, val/acc=\d\.\d+, best=\d\.\d+", bars[-1]), bars[-1]
    assert not EPOCH_LINE.search(text.replace("\r", "\n")), "the terminal gets the bar, not the log lines"


def test_a_study_shows_the_running_trials_epochs(tmp_path):
    path = _experiment(tmp_path, epochs=3, study=True)
    result = subprocess.run([sys.executable, "-m", "trainlab", "study", str(path)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == f"study {path}: starting (loading torch, Lightning and MLflow; checking the file and the stores)"
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("trial 0  epoch 1/3  "))
    finished = next(i for i, line in enumerate(lines) if re.match(r"\[\s*1/2\] trial 0 ", line))
    assert first_epoch < finished, "trial 0's epochs show while it runs, before its result line"
    trial_lines = EPOCH_LINE.findall(result.stdout)
    assert {number for number, *_ in trial_lines} == {"0", "1"}
    # The median pruner starts after 3 trials: both trials train all their epochs.
    assert [epoch for number, epoch, *_ in trial_lines if number == "0"] == ["1", "2", "3"]


@pytest.mark.ddp
def test_a_run_trained_by_a_process_group_shows_its_epochs_too(tmp_path):
    """Two CPU processes over gloo: the group's output goes to its log file, rank 0's epoch lines reach the terminal."""
    path = _experiment(tmp_path, epochs=2)
    result = subprocess.run([sys.executable, "-m", "trainlab", "train", str(path), "trainer.devices=2", "trainer.strategy=ddp",
                             "trainer.accelerator=cpu"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(epoch, total) for _, epoch, total, *_ in EPOCH_LINE.findall(result.stderr)] == [("1", "2"), ("2", "2")], result.stderr[-3000:]
