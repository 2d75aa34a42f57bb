"""A study survives its worker's death: the dead worker's trial is failed (Optuna) and its run ended
(MLflow), and running the command again completes the study without losing or repeating a trial."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from conftest import all_runs


def test_trials_of_dead_workers_are_failed_and_their_runs_ended(workdir, tracking_uri, mlflow_client):
    import optuna

    from trainlab.studies.stale import HEARTBEAT_ATTR, WORKER_ATTR, reap_dead_trials, worker_identity
    from trainlab.studies.storage import open_storage
    from trainlab.tracking.store import get_or_create_experiment

    storage = open_storage(str(workdir / "optuna_journal.log"))
    study = optuna.create_study(study_name="reap", storage=storage)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    experiment_id = get_or_create_experiment(mlflow_client, "reap")

    def running_trial(owner: dict, heartbeat: float | None = None):
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, owner)
        if heartbeat is not None:
            trial.set_user_attr(HEARTBEAT_ATTR, heartbeat)
        trial.set_user_attr("mlflow_run_id", mlflow_client.create_run(experiment_id).info.run_id)
        return trial

    alive_here = running_trial(worker_identity())
    dead_here = running_trial({"host": socket.gethostname(), "pid": finished.pid, "started": None})
    silent_elsewhere = running_trial({"host": "another-machine", "pid": 1234}, heartbeat=time.time() - 3600)
    beating_elsewhere = running_trial({"host": "another-machine", "pid": 1235}, heartbeat=time.time())

    assert sorted(reap_dead_trials(study, storage, tracking_uri)) == sorted([dead_here.number, silent_elsewhere.number])

    states = {t.number: t for t in study.get_trials()}
    assert states[alive_here.number].state.name == "RUNNING" and states[beating_elsewhere.number].state.name == "RUNNING"
    assert f"worker process {finished.pid}" in states[dead_here.number].user_attrs["trainlab.fail_reason"]
    assert "no heartbeat" in states[silent_elsewhere.number].user_attrs["trainlab.fail_reason"]
    for trial, status in ((dead_here, "KILLED"), (silent_elsewhere, "KILLED"), (alive_here, "RUNNING"), (beating_elsewhere, "RUNNING")):
        run = mlflow_client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == status
    assert "died" in mlflow_client.get_run(dead_here.user_attrs["mlflow_run_id"]).data.tags["trainlab.status_reason"]
    assert reap_dead_trials(study, storage, tracking_uri) == [], "a reaped trial is not reaped twice"


@pytest.mark.integration
def test_kill_9_mid_trial_then_the_same_command_completes_the_study(workdir, cli, tracking_uri, monkeypatch):
    """The issue's acceptance test: kill -9 during a trial, re-run, nothing completed is lost or duplicated.
    The killed trial has no resume checkpoint yet, so it is failed and replaced (with one, it is continued:
    tests/test_resume.py)."""
    monkeypatch.setenv("TRAINLAB_CHECKPOINT_EVERY_S", "100000")
    import optuna

    from trainlab.studies.storage import open_storage

    document = {
        "seed_everything": 7,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64]}},
        "data": {"class_path": "Digits", "init_args": {"batch_size": 64}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.005}},
        "trainer": {"max_epochs": 10, "enable_progress_bar": False},  # long enough to catch trial 1 mid-run
        "tracking": {"experiment": "resume-test"},
        "study": {"name": "resume", "metric": "val/acc", "direction": "maximize", "n_trials": 3, "sampler": {"type": "random", "seed": 0}, "pruner": "none"},
        "search_space": {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    log = (workdir / "first.log").open("w")
    first = subprocess.Popen([sys.executable, "-m", "trainlab", "study", str(path)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)

    journal = workdir / "optuna_journal.log"
    deadline = time.monotonic() + 300
    victim = None
    while victim is None:
        assert first.poll() is None, (workdir / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no second trial started in time"
        time.sleep(0.3)
        if not journal.exists():
            continue
        trials = optuna.load_study(study_name="resume", storage=open_storage(str(journal))).get_trials()
        # Mid-trial: trial 0 done, trial 1 has its MLflow run and has reported at least one epoch.
        if len(trials) >= 2 and trials[0].state.name == "COMPLETE" and trials[1].state.name == "RUNNING" and trials[1].intermediate_values:
            victim = trials[1]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    log.close()

    survivor = optuna.load_study(study_name="resume", storage=open_storage(str(journal))).trials[0]
    runs_before = {r.info.run_id: r.info.status for r in all_runs(tracking_uri)}
    assert runs_before[victim.user_attrs["mlflow_run_id"]] == "RUNNING", "kill -9 leaves the trial's run RUNNING"

    again = cli("study", path)
    assert again.code == 0, again

    trials = optuna.load_study(study_name="resume", storage=open_storage(str(journal))).trials
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], states
    assert f"worker process {first.pid}" in trials[1].user_attrs["trainlab.fail_reason"]
    assert trials[0].value == survivor.value and trials[0].user_attrs["mlflow_run_id"] == survivor.user_attrs["mlflow_run_id"]

    runs = all_runs(tracking_uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    killed_run = next(r for r in runs if r.info.run_id == victim.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "KILLED" and "died" in killed_run.data.tags["trainlab.status_reason"]
    finished = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial" and r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["trainlab.trial"]) for r in finished) == [0, 2, 3]
    assert {r.info.run_id for r in finished} == {t.user_attrs["mlflow_run_id"] for t in trials if t.state.name == "COMPLETE"}


@pytest.mark.integration
def test_an_invocation_that_ends_early_leaves_the_parent_running_for_the_others(workdir, cli, tracking_uri):
    """Two invocations share a study (two terminals, or two machines): the one whose time budget runs out
    first must not mark the shared parent run FINISHED while the other still trains a trial."""
    document = {
        "seed_everything": 7,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64]}},
        "data": {"class_path": "Digits", "init_args": {"batch_size": 64}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.005}},
        "trainer": {"max_epochs": 1000, "enable_progress_bar": False},  # outlasts the other invocation
        "tracking": {"experiment": "shared-test"},
        "study": {"name": "shared", "metric": "val/acc", "direction": "maximize", "n_trials": 1, "sampler": {"type": "random", "seed": 0}, "pruner": "none"},
        "search_space": {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    log = (workdir / "long.log").open("w")
    long = subprocess.Popen([sys.executable, "-m", "trainlab", "study", str(path)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "trial"]:
            assert long.poll() is None, (workdir / "long.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the long invocation never started its trial"
            time.sleep(0.5)

        short = cli("study", path, "--timeout", "1s")
        assert "1 trial(s) still run on other workers; the parent run stays RUNNING" in short.err, short
        (parent,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "study"]
        assert parent.info.status == "RUNNING"

        long.send_signal(signal.SIGTERM)  # the last invocation ends the parent, with its own status
        long.wait(timeout=120)
    finally:
        if long.poll() is None:
            long.kill()
        log.close()
    (parent,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "study"]
    assert parent.info.status == "KILLED", (workdir / "long.log").read_text()[-3000:]
    import optuna

    from trainlab.studies.storage import open_storage

    (trial,) = optuna.load_study(study_name="shared", storage=open_storage(str(workdir / "optuna_journal.log"))).trials
    assert trial.state.name == "FAIL" and "interrupted" in trial.user_attrs["trainlab.fail_reason"], "SIGTERM mid-fit fails the trial"
    assert not [r for r in all_runs(tracking_uri) if r.info.status == "RUNNING"]


def test_a_signal_handler_writing_to_the_journal_during_a_write_of_its_own_thread_does_not_wait_for_it(tmp_path, caplog):
    """SLURM's time-limit signal is handled in the main thread, on top of whatever it interrupted: when that is
    a journal write, the hand-over mark takes the lock over (before: 30 s of waiting until Optuna broke the
    lock, past SLURM's grace, and the trial was failed as dead)."""
    import os
    import signal

    import optuna

    from trainlab.studies.journal_lock import release_locks_of_this_thread
    from trainlab.studies.storage import open_storage

    path = str(tmp_path / "optuna_journal.log")
    study = optuna.create_study(study_name="s", storage=open_storage(path))

    def hand_over(signum, frame):  # what trainlab.slurm.array_task.hand_over_trial does first
        release_locks_of_this_thread()
        optuna.load_study(study_name="s", storage=open_storage(path)).set_user_attr("handed", "over")

    previous = signal.signal(signal.SIGUSR2, hand_over)
    try:
        lock = study._storage._backend._lock
        lock.acquire()  # this thread is inside a journal write
        try:
            os.kill(os.getpid(), signal.SIGUSR2)  # the handler runs here, before the write's release
        finally:
            lock.release()  # the interrupted write's own release: a no-op now
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert optuna.load_study(study_name="s", storage=open_storage(path)).user_attrs == {"handed": "over"}
    assert "Forcibly releasing" not in caplog.text
    study.set_user_attr("later", "writes go on")  # the lock is free
