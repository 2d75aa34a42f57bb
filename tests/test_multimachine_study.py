"""Studies across machines, for real on this one: an MLflow tracking server on PostgreSQL, a study in
PostgreSQL, and 3 separately started workers (as if on 3 machines); one of them is killed with -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import yaml

from conftest import need, postgres_admin, postgres_available

pytestmark = [pytest.mark.postgres, pytest.mark.integration]
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
N_TRIALS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2):
            return True
    except OSError:
        return False


def test_three_workers_one_server_one_study_survive_a_kill_9(workdir, fast_digits):
    need(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import optuna
    from mlflow.tracking import MlflowClient

    from trainlab.studies.stale import was_reaped

    suffix = uuid.uuid4().hex[:8]
    mlflow_db, optuna_db, name = f"tl_mlflow_{suffix}", f"tl_optuna_{suffix}", f"multi-{suffix}"
    storage = f"postgresql://postgres@127.0.0.1:5432/{optuna_db}"
    document = yaml.safe_load(fast_digits.read_text())
    document["trainer"]["max_epochs"] = 4
    document["study"] = {"metric": "val/acc", "direction": "maximize", "n_trials": N_TRIALS,
                         "sampler": {"type": "random", "seed": 1}, "pruner": {"type": "none"}}
    document["search_space"] = {"optimizer.init_args.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}}
    study_file = workdir / "study.yaml"
    study_file.write_text(yaml.safe_dump(document, sort_keys=False))

    postgres_admin(f"CREATE DATABASE {mlflow_db}")
    postgres_admin(f"CREATE DATABASE {optuna_db}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "trainlab", "server", "--backend-store-uri", f"postgresql://postgres@127.0.0.1:5432/{mlflow_db}",
         "--artifacts-destination", str(workdir / "mlartifacts"), "--port", str(port), "--workers", "2"],
        cwd=workdir, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen] = []
    try:
        _wait_for(lambda: _healthy(url), 180, "the MLflow server")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for machine in range(3):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "trainlab", "study", str(study_file), "--storage", storage, "--tracking-uri", url,
                 "--study-name", name],
                cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
        victim = workers[0]

        def victim_is_training() -> bool:
            if victim.poll() is not None:
                pytest.fail("worker 0 ended before it could be killed:\n" + victim.stdout.read()[-3000:])
            try:
                trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            except KeyError:
                return False
            return any(t.state.name == "RUNNING" and (t.user_attrs.get("trainlab.worker") or {}).get("pid") == victim.pid
                       and t.user_attrs.get("mlflow_run_id") for t in trials)

        _wait_for(victim_is_training, 300, "a trial running in worker 0")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        outputs = [worker.communicate(timeout=600)[0] for worker in workers[1:]]
        assert [worker.returncode for worker in workers[1:]] == [0, 0], "\n".join(o[-2000:] for o in outputs)

        study = optuna.load_study(study_name=name, storage=storage)
        states = [t.state.name for t in study.trials]
        assert states.count("COMPLETE") == N_TRIALS, states
        assert "RUNNING" not in states and states.count("FAIL") >= 1, states  # the killed trial, failed and replaced

        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name(document["tracking"]["experiment"])
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        parents = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
        assert len(parents) == 1, "the three workers must share one parent run"
        trial_runs = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
        by_id = {r.info.run_id: r for r in trial_runs}
        assert len(by_id) == len(trial_runs) == len(study.trials), "one MLflow run per Optuna trial, none twice"
        for trial in study.trials:
            run = by_id[trial.user_attrs["mlflow_run_id"]]
            assert run.data.tags["trainlab.trial"] == str(trial.number)
            # A trial failed by the reaper (its worker was killed) has its run ended KILLED, as every reaped run.
            expected = "KILLED" if was_reaped(trial) else {"COMPLETE": "FINISHED", "FAIL": "FAILED"}[trial.state.name]
            assert run.info.status == expected, (trial.number, run.info.status)
        assert not [r for r in runs if r.info.status == "RUNNING"]
        best = by_id[study.best_trial.user_attrs["mlflow_run_id"]]
        assert "config.yaml" in [a.path for a in client.list_artifacts(best.info.run_id)], "artifacts proxied through the server"
    finally:
        for process in [*workers, server]:
            if process.poll() is None:
                (os.killpg(process.pid, signal.SIGTERM) if process is server else process.kill())
        server.wait(timeout=60)
        for database in (mlflow_db, optuna_db):
            postgres_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
