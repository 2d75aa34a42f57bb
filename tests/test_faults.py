"""Faults a long study meets, with real processes and real signals: kill -9 of a run, a run owned by a
silent machine, SIGTERM of train and study, a killed study worker, a tracking store locked for longer
than the retry window. Each ends with one line, no traceback and nothing left RUNNING."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import all_runs

pytestmark = pytest.mark.integration

TRAIN_LONG = {
    "seed_everything": 7,
    "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64]}},
    "data": {"class_path": "Digits", "init_args": {"batch_size": 64}},
    "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.005}},
    "trainer": {"max_epochs": 10000, "enable_progress_bar": False},  # runs until the test stops it
    "tracking": {"experiment": "faults"},
}


def write_experiment(workdir: Path, name: str, **sections) -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump({**TRAIN_LONG, **sections}, sort_keys=False))
    return path


def start(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``trainlab ARGS`` as a real process of its own, output to files in ``workdir``."""
    out, err = (workdir / "out.log").open("w"), (workdir / "err.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "trainlab", *args], cwd=workdir, stdout=out, stderr=err, env={**os.environ, **(env or {})})


def epochs_logged(workdir: Path, metric: str = "val/acc") -> int:
    """Epochs of ``metric`` in the store so far (plain sqlite: the test must not lock MLflow's own engine)."""
    db = workdir / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            return connection.execute("SELECT count(*) FROM metrics WHERE key = ?", (metric,)).fetchone()[0]
    except sqlite3.Error:  # tables not created yet
        return 0


def wait_until(condition, process: subprocess.Popen, workdir: Path, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"exited {process.returncode} before {what}: {(workdir / 'err.log').read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def no_running(tracking_uri: str) -> None:
    running = [(r.info.run_id, r.data.tags.get("trainlab.kind")) for r in all_runs(tracking_uri) if r.info.status == "RUNNING"]
    assert not running, running


def assert_one_clean_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("trainlab:")]
    assert len(lines) == 1 and expected in lines[0], stderr[-3000:]


# ---- Fault 2: kill -9 leaves nothing RUNNING -------------------------------------------------------


def test_kill_9_of_train_is_reaped_by_the_next_command(workdir, cli, tracking_uri):
    path = write_experiment(workdir, "long.yaml")
    train = start(workdir, "train", str(path))
    try:
        wait_until(lambda: epochs_logged(workdir) >= 1, train, workdir, "the first epoch")
    finally:
        os.kill(train.pid, signal.SIGKILL)
        train.wait()
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "RUNNING", "kill -9 leaves the run RUNNING until a command reaps it"
    assert run.data.tags["trainlab.pid"] == str(train.pid) and run.data.tags["trainlab.host"] == socket.gethostname()
    assert float(run.data.tags["trainlab.heartbeat"]) > time.time() - 600

    listed = cli("runs")
    assert listed.code == 0, listed
    assert f"run {run.info.run_id} was left RUNNING: its process {train.pid} on {socket.gethostname()} died" in listed.err, listed
    (row,) = [line for line in listed.out.splitlines() if line.startswith(run.info.run_id)]
    assert " KILLED " in f" {row} ", row
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "KILLED"
    assert run.data.tags["trainlab.status_reason"].startswith(f"reaped by trainlab: its process {train.pid}")
    assert time.strptime(run.data.tags["trainlab.reaped"], "%Y-%m-%dT%H:%M:%SZ")
    no_running(tracking_uri)
    assert cli("runs").err == "", "a reaped run is not reaped twice"


def test_runs_of_other_hosts_are_reaped_after_the_heartbeat_timeout(workdir, cli, tracking_uri, mlflow_client, monkeypatch):
    """A run owned elsewhere lives while its heartbeat is fresh; a recycled pid here is not its owner."""
    from trainlab.tracking.liveness import process_identity

    experiment_id = mlflow_client.create_experiment("elsewhere")
    me = process_identity()

    def run_owned_by(host: str, pid: int, heartbeat: float, started: float | None = None) -> str:
        tags = {"trainlab.host": host, "trainlab.pid": str(pid), "trainlab.heartbeat": f"{heartbeat:.0f}"}
        if started is not None:
            tags["trainlab.process_started"] = f"{started:.0f}"
        return mlflow_client.create_run(experiment_id, tags=tags).info.run_id

    silent = run_owned_by("another-machine", 4242, time.time() - 200)
    beating = run_owned_by("another-machine", 4243, time.time() - 20)
    alive_here = run_owned_by(me["host"], me["pid"], time.time(), me["started"])
    recycled_pid = run_owned_by(me["host"], me["pid"], time.time(), me["started"] - 1)  # same pid, earlier process
    unowned = mlflow_client.create_run(experiment_id).info.run_id  # another tool's run: never ours to judge

    monkeypatch.setenv("TRAINLAB_HEARTBEAT_TIMEOUT", "300")
    assert cli("runs").code == 0
    assert mlflow_client.get_run(silent).info.status == "RUNNING", "200 s of silence is within a 300 s timeout"

    monkeypatch.setenv("TRAINLAB_HEARTBEAT_TIMEOUT", "120")
    listed = cli("runs")
    assert listed.code == 0, listed
    status = {run_id: mlflow_client.get_run(run_id) for run_id in (silent, beating, alive_here, recycled_pid, unowned)}
    assert {k: v.info.status for k, v in status.items()} == {silent: "KILLED", beating: "RUNNING", alive_here: "RUNNING", recycled_pid: "KILLED", unowned: "RUNNING"}
    assert "sent no heartbeat for 2" in status[silent].data.tags["trainlab.status_reason"]
    assert "TRAINLAB_HEARTBEAT_TIMEOUT" in status[silent].data.tags["trainlab.status_reason"]
    assert "died" in status[recycled_pid].data.tags["trainlab.status_reason"]

    monkeypatch.setenv("TRAINLAB_HEARTBEAT_TIMEOUT", "soon")
    bad = cli("runs")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "TRAINLAB_HEARTBEAT_TIMEOUT" in bad.err and "'soon'" in bad.err, bad


def test_kill_9_of_a_study_leaves_its_parent_and_trial_runs_to_the_reaper(workdir, cli, tracking_uri):
    path = write_experiment(workdir, "study.yaml", study={**STUDY, "n_trials": 2}, search_space=SPACE)
    study = start(workdir, "study", str(path))
    try:
        wait_until(lambda: epochs_logged(workdir) >= 1, study, workdir, "the first trial's first epoch")
    finally:
        os.kill(study.pid, signal.SIGKILL)
        study.wait()
    listed = cli("runs")
    assert listed.code == 0 and listed.err.count("ended KILLED") == 2, listed
    runs = {r.data.tags.get("trainlab.kind"): r for r in all_runs(tracking_uri)}
    for kind in ("study", "trial"):
        assert runs[kind].info.status == "KILLED" and f"its process {study.pid}" in runs[kind].data.tags["trainlab.status_reason"], kind
    no_running(tracking_uri)


# ---- Fault 5: SIGTERM --------------------------------------------------------------------------------


def test_sigterm_of_train_ends_the_run_killed_within_seconds(workdir, tracking_uri):
    path = write_experiment(workdir, "long.yaml")
    train = start(workdir, "train", str(path))
    wait_until(lambda: epochs_logged(workdir) >= 1, train, workdir, "the first epoch")
    sent = time.monotonic()
    train.send_signal(signal.SIGTERM)
    try:
        code = train.wait(timeout=30)
    finally:
        if train.poll() is None:
            train.kill()
    took = time.monotonic() - sent
    assert took < 15, f"SIGTERM took {took:.1f} s"
    assert code == 143
    assert_one_clean_line((workdir / "err.log").read_text(), "terminated by SIGTERM")
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "KILLED" and run.data.tags["trainlab.status_reason"] == "interrupted by SIGTERM"


# A user's callback reading the store when the signal comes: the signal lands mid-read (its rows half fetched)
# while another connection writes, as the heartbeat thread or the epoch logger do.
READS_THE_STORE_WHEN_SIGNALLED = """
import os, signal
from lightning.pytorch.callbacks import Callback
from mlflow.tracking._tracking_service.utils import _get_store


class ReadsTheStore(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            engine = _get_store(trainer.logger._tracking_uri).engine
            with engine.connect() as connection:
                rows = connection.exec_driver_sql("SELECT key FROM metrics")
                rows.fetchone()
                trainer.logger.experiment.set_tag(trainer.logger.run_id, "written", "meanwhile")
                os.kill(os.getpid(), signal.SIGTERM)
"""


def test_sigterm_landing_while_the_store_is_read_still_ends_the_run_killed(workdir, tracking_uri):
    """The interrupted query keeps its SQLite snapshot on a pooled connection, on which a write fails at once
    ("database is locked"); the run's end is written on fresh connections instead."""
    (workdir / "store_reader.py").write_text(READS_THE_STORE_WHEN_SIGNALLED)
    path = write_experiment(workdir, "read.yaml", trainer={**TRAIN_LONG["trainer"], "callbacks": [{"class_path": "store_reader.ReadsTheStore"}]})
    train = start(workdir, "train", str(path))
    code = train.wait(timeout=300)
    assert code == 143, (workdir / "err.log").read_text()[-3000:]
    assert_one_clean_line((workdir / "err.log").read_text(), "terminated by SIGTERM")
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "KILLED" and run.data.tags["trainlab.status_reason"] == "interrupted by SIGTERM"


STUDY = {
    "name": "faults",
    "metric": "val/acc",
    "direction": "maximize",
    "sampler": {"type": "random", "seed": 0},
    "pruner": "none",
}
SPACE = {"model.init_args.dropout": {"low": 0.0, "high": 0.3}}


def test_sigterm_of_study_ends_trial_and_parent_killed(workdir, tracking_uri):
    import optuna

    from trainlab.studies.storage import open_storage

    path = write_experiment(workdir, "study.yaml", study={**STUDY, "n_trials": 2}, search_space=SPACE)
    study = start(workdir, "study", str(path))
    wait_until(lambda: epochs_logged(workdir) >= 1, study, workdir, "the first trial's first epoch")
    sent = time.monotonic()
    study.send_signal(signal.SIGTERM)
    try:
        code = study.wait(timeout=60)
    finally:
        if study.poll() is None:
            study.kill()
    took = time.monotonic() - sent
    assert took < 30, f"SIGTERM took {took:.1f} s (the study also writes its report)"
    assert code == 143
    assert_one_clean_line((workdir / "err.log").read_text(), "terminated by SIGTERM")
    (trial,) = optuna.load_study(study_name="faults", storage=open_storage(str(workdir / "optuna_journal.log"))).trials
    assert trial.state.name == "FAIL" and trial.user_attrs["trainlab.fail_reason"] == "interrupted by SIGTERM"
    runs = {r.data.tags.get("trainlab.kind"): r for r in all_runs(tracking_uri)}
    assert runs["study"].info.status == "KILLED" and runs["trial"].info.status == "KILLED", runs
    no_running(tracking_uri)


# ---- Fault 4: one worker of --jobs 2 killed -----------------------------------------------------------


def test_a_killed_worker_loses_one_trial_and_the_study_still_finishes(workdir, tracking_uri):
    import optuna

    from trainlab.studies.stale import WORKER_ATTR
    from trainlab.studies.storage import open_storage

    n_trials = 3
    path = write_experiment(workdir, "study.yaml", study={**STUDY, "n_trials": n_trials}, search_space=SPACE, trainer={"max_epochs": 25, "enable_progress_bar": False})
    study = start(workdir, "study", str(path), "--jobs", "2")
    journal = workdir / "optuna_journal.log"

    def worker_pid() -> int | None:
        children = Path(f"/proc/{study.pid}/task/{study.pid}/children").read_text().split()
        for child in children:
            if b"trainlab.studies.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        return None

    def worker_mid_trial() -> bool:
        pid = worker_pid()
        if pid is None or not journal.exists():
            return False
        trials = optuna.load_study(study_name="faults", storage=open_storage(str(journal))).get_trials()
        return any(t.state.name == "RUNNING" and t.intermediate_values and (t.user_attrs.get(WORKER_ATTR) or {}).get("pid") == pid for t in trials)

    try:
        wait_until(worker_mid_trial, study, workdir, "the worker process's first epoch", timeout_s=400)
        victim = worker_pid()
        os.kill(victim, signal.SIGKILL)
        code = study.wait(timeout=500)
    finally:
        if study.poll() is None:
            study.kill()
    err = (workdir / "err.log").read_text()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "a worker was killed by signal 9; its trial was failed and replaced" in err
    assert "1 lost to dead workers" in (workdir / "out.log").read_text()

    trials = optuna.load_study(study_name="faults", storage=open_storage(str(journal))).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == n_trials and states.count("FAIL") == 1 and len(states) == n_trials + 1, states
    (lost,) = [t for t in trials if t.state.name == "FAIL"]
    assert f"worker process {victim} on {socket.gethostname()} died" in lost.user_attrs["trainlab.fail_reason"]

    runs = all_runs(tracking_uri)
    (parent,) = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["trainlab.study.lost_trials"] == "1" and parent.data.metrics["study/trials_lost"] == 1
    trial_runs = {r.info.run_id: r for r in runs if r.data.tags.get("trainlab.kind") == "trial"}
    assert set(trial_runs) == {t.user_attrs["mlflow_run_id"] for t in trials}, "one MLflow run per trial"
    assert trial_runs[lost.user_attrs["mlflow_run_id"]].info.status == "KILLED"
    no_running(tracking_uri)


# ---- Fault 3: the tracking store goes away mid-run ---------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def hold_lock(workdir: Path, seconds: float) -> subprocess.Popen:
    """Another process holds ``BEGIN EXCLUSIVE`` on the store: nobody else reads or writes it meanwhile."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir / "mlflow.db"), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_store_locked_for_longer_than_the_retry_window_ends_the_run_with_one_line(workdir, cli, tracking_uri):
    path = write_experiment(workdir, "long.yaml")
    train = start(workdir, "train", str(path), env={"TRAINLAB_STORE_RETRY": "8"})
    try:
        wait_until(lambda: epochs_logged(workdir) >= 2, train, workdir, "two epochs")
        holder = hold_lock(workdir, 45)
        locked = time.monotonic()
        code = train.wait(timeout=40)  # the lock is still held: the run gave up after its window
        took = time.monotonic() - locked
    finally:
        if train.poll() is None:
            train.kill()
    assert holder.poll() is None, "the lock was held throughout"
    holder.kill()
    holder.wait()
    assert code == 1 and 8 <= took < 40, (code, took)
    err = (workdir / "err.log").read_text()
    assert_one_clean_line(err, f"tracking store {tracking_uri} did not answer for 8 s (database is locked; set TRAINLAB_STORE_RETRY")
    (line,) = [line for line in err.splitlines() if line.startswith("trainlab:")]
    checkpoint = Path(line.split("last checkpoint kept at ", 1)[1].split(";", 1)[0])
    assert checkpoint.is_file() and checkpoint.suffix == ".ckpt" and checkpoint.parent.parent == workdir / "checkpoints"

    listed = cli("runs")  # the store is back: the first command ends the abandoned run
    assert listed.code == 0, listed
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "KILLED" and checkpoint.parent.name == run.info.run_id
    assert run.data.tags["trainlab.status_reason"].startswith(f"reaped by trainlab: its process {train.pid}") and "trainlab.reaped" in run.data.tags
    no_running(tracking_uri)


def test_a_store_locked_for_less_than_the_window_is_waited_out(workdir, tracking_uri):
    epochs = 40
    path = write_experiment(workdir, "short.yaml", trainer={"max_epochs": epochs, "enable_progress_bar": False})
    train = start(workdir, "train", str(path), env={"TRAINLAB_STORE_RETRY": "60"})
    try:
        wait_until(lambda: epochs_logged(workdir) >= 1, train, workdir, "the first epoch")
        holder = hold_lock(workdir, 6)
        assert holder.wait(timeout=60) == 0
        code = train.wait(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
    err = (workdir / "err.log").read_text()
    assert code == 0 and "Traceback" not in err, err[-3000:]
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert epochs_logged(workdir) == epochs, "no epoch was lost to the lock"
