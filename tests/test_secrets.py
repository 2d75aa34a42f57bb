"""Issue 19, secrets: a password typed in a URI, or held in an environment variable, is written nowhere.

The study test uses a real PostgreSQL role with a password and a real ``trainlab study --jobs 2`` process,
samples ``ps`` while it runs, then searches every file it left, its terminal output, every MLflow param and
tag and every Optuna attribute for the password and for a planted environment variable's value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import REPO, all_runs, need, postgres_available

PASSWORD = "S3cret-pw-" + uuid.uuid4().hex[:8]
PLANTED = "planted-secret-123-" + uuid.uuid4().hex[:6]
TRAINLAB = Path(sys.executable).with_name("trainlab")


# --- the masking function itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgresql://me:pw0rd@db:5432/optuna", "postgresql://me:***@db:5432/optuna"),
        ("postgresql+psycopg2://me:pw0rd@db/optuna", "postgresql+psycopg2://me:***@db/optuna"),
        ("cannot reach http://me:pw0rd@host:5000 (refused)", "cannot reach http://me:***@host:5000 (refused)"),
        ("http://me:p@ss@host/x", "http://me:***@host/x"),
        ("postgresql://me@db/optuna?password=pw0rd&sslmode=require", "postgresql://me@db/optuna?password=***&sslmode=require"),
        ("host=db user=me password=pw0rd dbname=x", "host=db user=me password=*** dbname=x"),
        ("postgresql://me@db/optuna", "postgresql://me@db/optuna"),
        ("http://host:5000/#/experiments/1", "http://host:5000/#/experiments/1"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_mask_text_hides_passwords_and_keeps_the_rest(text, shown):
    from trainlab.secrets import mask_text

    assert mask_text(text) == shown


def test_only_allow_listed_environment_variables_are_recorded(monkeypatch):
    from trainlab.tracking.environment import RECORDED_ENVIRONMENT_VARIABLES, recorded_environment_variables

    monkeypatch.setenv("PGPASSWORD", "pg-" + PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MY_TOKEN", PLANTED)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    recorded = recorded_environment_variables()
    assert recorded["OMP_NUM_THREADS"] == "3"
    assert set(recorded) <= set(RECORDED_ENVIRONMENT_VARIABLES)
    assert PLANTED not in json.dumps(recorded) and PASSWORD not in json.dumps(recorded)


# --- bad input names the URI, not its password ---------------------------------------------------------


def test_unreachable_storage_error_masks_the_password(workdir, cli):
    document = yaml.safe_load((REPO / "studies" / "digits_mlp.yaml").read_text())
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document))
    result = cli("study", path, "--storage", f"postgresql://me:{PASSWORD}@127.0.0.1:1/optuna")
    assert result.code == 2, result
    assert "trainlab: error: --storage: got 'postgresql://me:***@127.0.0.1:1/optuna'" in result.err, result
    assert PASSWORD not in result.out + result.err
    assert not (workdir / "mlflow.db").exists(), "nothing is recorded for bad input"


def test_unreachable_tracking_server_error_masks_the_password(workdir, cli, fast_digits):
    result = cli("train", fast_digits, "--tracking-uri", f"http://me:{PASSWORD}@127.0.0.1:1")
    assert result.code == 2, result
    assert "http://me:***@127.0.0.1:1" in result.err, result
    assert PASSWORD not in result.out + result.err


# --- a real study on PostgreSQL with a password role -----------------------------------------------------


@pytest.fixture
def password_database():
    """A PostgreSQL role with a password and a database it owns; both dropped afterwards."""
    need(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import psycopg2

    name = f"trainlab_secret_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} LOGIN PASSWORD %s", (PASSWORD,))
        cursor.execute(f"CREATE DATABASE {name} OWNER {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cursor.execute(f"DROP ROLE IF EXISTS {name}")
        admin.close()


def _study_file(folder: Path, n_trials: int) -> Path:
    document = {
        "seed_everything": 7,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [16]}},
        "data": {"class_path": "Digits"},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False},
        "tracking": {"experiment": "secrets"},
        "study": {"metric": "val/acc", "direction": "maximize", "n_trials": n_trials, "sampler": {"type": "random", "seed": 0},
                  "pruner": {"type": "none"}},
        "search_space": {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _processes_showing(needles: tuple[str, ...]) -> dict[int, str]:
    """``ps -eo pid,args`` lines (by pid) that contain any of ``needles``: what every user of the machine sees."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    shown = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if any(needle in args for needle in needles):
            shown[int(pid)] = args
    return shown


def _files_containing(folder: Path, needles: tuple[str, ...]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(folder)}: {needle}" for needle in needles if needle.encode() in data]
    return hits


def _optuna_attributes(storage_url: str) -> str:
    import optuna

    storage = optuna.storages.RDBStorage(storage_url)
    texts = []
    for frozen in storage.get_all_studies():
        texts.append(json.dumps([frozen.study_name, frozen.user_attrs, frozen.system_attrs], default=str))
        for trial in storage.get_all_trials(frozen._study_id, deepcopy=False):
            texts.append(json.dumps([trial.user_attrs, trial.system_attrs, trial.params], default=str))
    return "\n".join(texts)


def _mlflow_params_and_tags(tracking_uri: str) -> str:
    return "\n".join(json.dumps([run.info.run_name, run.data.params, run.data.tags], default=str) for run in all_runs(tracking_uri))


@pytest.mark.postgres
@pytest.mark.integration
def test_study_with_a_password_in_its_storage_url_writes_it_nowhere(tmp_path, password_database):
    """`trainlab study --jobs 2 --storage postgresql://role:PASSWORD@...`: the password is in no other process's
    argv, no file, no output, no MLflow param or tag and no Optuna attribute; the same for an environment
    variable's value."""
    role = password_database
    storage = f"postgresql://{role}:{PASSWORD}@127.0.0.1:5432/{role}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study_file = _study_file(tmp_path, n_trials=4)
    env = {**os.environ, "MY_TOKEN": PLANTED, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    needles = (PASSWORD, PLANTED)
    command = [str(TRAINLAB), "study", str(study_file), "--jobs", "2", "--storage", storage, "--tracking-uri", tracking_uri]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    leaked, workers_seen, samples = {}, set(), 0
    out = err = ""
    try:
        while process.poll() is None:
            shown = _processes_showing((*needles, "trainlab.studies.worker"))
            workers_seen |= {pid for pid, args in shown.items() if "trainlab.studies.worker" in args}
            # The command the user typed shows what they typed; every process trainlab starts must not.
            leaked.update({pid: args for pid, args in shown.items() if pid != process.pid and any(n in args for n in needles)})
            samples += 1
            time.sleep(0.2)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, (out[-3000:], err[-3000:])
    assert workers_seen, f"no worker process seen in {samples} samples of ps"
    assert not leaked, f"processes started by trainlab show a secret in ps: {leaked}"

    assert f"{role}:***@127.0.0.1:5432/{role}" in out, out  # the storage is named, its password masked
    assert not [n for n in needles if n in out + err], (out[-3000:], err[-3000:])
    assert not _files_containing(tmp_path, needles)
    assert not [n for n in needles if n in _mlflow_params_and_tags(tracking_uri)]
    assert not [n for n in needles if n in _optuna_attributes(storage)]

    # The recorded command line is there, masked; and no environment variable outside the allow-list.
    environments = [json.loads(p.read_text()) for p in tmp_path.rglob("environment.json")]
    assert len(environments) >= 4, "every trial records its environment"
    assert any(f"postgresql://{role}:***@127.0.0.1:5432/{role}" in e["argv"] for e in environments), [e["argv"] for e in environments]
    assert all("MY_TOKEN" not in e.get("environment_variables", {}) for e in environments)


@pytest.mark.postgres
@pytest.mark.integration
def test_pgpassword_instead_of_a_password_in_the_url(workdir, cli, tracking_uri, password_database, monkeypatch):
    """The documented way: the URL names the role only, PGPASSWORD holds the password; it is recorded nowhere."""
    role = password_database
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    storage = f"postgresql://{role}@127.0.0.1:5432/{role}"
    result = cli("study", _study_file(workdir, n_trials=1), "--storage", storage)
    assert result.code == 0, result
    assert f"storage: {storage}" in result.out
    assert PASSWORD not in result.out + result.err
    assert not _files_containing(workdir, (PASSWORD,))
    assert PASSWORD not in _mlflow_params_and_tags(tracking_uri)
    assert PASSWORD not in _optuna_attributes(storage)


# --- an experiment file is code: reproduce says what it will import ----------------------------------------


@pytest.mark.integration
def test_reproduce_dry_run_lists_the_class_paths_before_importing(cli, fast_digits, mlflow_client):
    trained = cli("train", fast_digits, "trainer.max_epochs=1")
    assert trained.code == 0, trained
    run_id = trained.out.split("run ", 1)[1].split()[0]
    result = cli("reproduce", run_id, "--dry-run")
    assert result.code == 0, result
    lines = result.out.splitlines()
    imports = next(i for i, line in enumerate(lines) if line.startswith("imports ("))
    assert imports < next(i for i, line in enumerate(lines) if line.startswith("reproduce run")), result.out
    assert "model: " in lines[imports] and "MLPClassifier" in lines[imports], lines[imports]
    assert "data: " in lines[imports] and "Digits" in lines[imports], lines[imports]
    assert "optimizer: torch.optim.Adam" in lines[imports], lines[imports]


# --- the servers trainlab starts get their stores outside argv ----------------------------------------------


@pytest.mark.postgres
@pytest.mark.integration
def test_ui_servers_get_the_storage_password_outside_their_command_lines(tmp_path, password_database):
    """`trainlab ui --storage postgresql://role:PASSWORD@...`: mlflow server and optuna-dashboard answer, and
    neither shows the password in ps; the terminal shows it masked."""
    import signal
    import socket
    import urllib.request

    from mlflow.tracking import MlflowClient

    role = password_database
    storage = f"postgresql://{role}:{PASSWORD}@127.0.0.1:5432/{role}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri).create_experiment("browse")  # `trainlab ui` never creates a store
    import optuna

    optuna.create_study(study_name="browse", storage=storage)  # optuna-dashboard reads an existing storage

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    ports = [free_port(), free_port()]
    command = [str(TRAINLAB), "ui", "--tracking-uri", tracking_uri, "--storage", storage, "--port", str(ports[0]), "--dashboard-port", str(ports[1])]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    leaked, answered = {}, set()
    try:
        deadline = time.monotonic() + 240
        while len(answered) < 2 and time.monotonic() < deadline and process.poll() is None:
            leaked.update({pid: args for pid, args in _processes_showing((PASSWORD,)).items() if pid != process.pid})
            for port, probe in zip(ports, ("/health", "/")):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2):
                        answered.add(port)
                except OSError:
                    pass
            time.sleep(0.5)
        leaked.update({pid: args for pid, args in _processes_showing((PASSWORD,)).items() if pid != process.pid})
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert answered == set(ports), out
    assert not leaked, f"servers started by trainlab show the password in ps: {leaked}"
    assert f"{role}:***@127.0.0.1:5432/{role}" in out and PASSWORD not in out, out


# --- a real MLflow tracking server given a URI with credentials ---------------------------------------------


@pytest.mark.integration
def test_tracking_server_uri_with_credentials_is_written_nowhere(tmp_path):
    """`trainlab study --jobs 2 --tracking-uri http://me:PASSWORD@127.0.0.1:PORT` against a real `mlflow server`
    (started by `trainlab server`, no auth app: Flask-WTF, which MLflow's basic-auth app needs, is not installed,
    so the server accepts and ignores the credentials the client sends): the password shows nowhere."""
    import signal
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_dir, study_dir = tmp_path / "server", tmp_path / "study"
    server_dir.mkdir()
    study_dir.mkdir()
    env = {**os.environ, "MY_TOKEN": PLANTED, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [str(TRAINLAB), "server", "--backend-store-uri", f"sqlite:///{server_dir / 'mlflow.db'}", "--artifacts-destination",
         str(server_dir / "artifacts"), "--port", str(port), "--workers", "1"],
        cwd=server_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    needles = (PASSWORD, PLANTED)
    uri = f"http://me:{PASSWORD}@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        command = [str(TRAINLAB), "study", str(_study_file(study_dir, n_trials=3)), "--jobs", "2", "--tracking-uri", uri]
        process = subprocess.Popen(command, cwd=study_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        leaked = {}
        while process.poll() is None:
            leaked.update({pid: args for pid, args in _processes_showing(needles).items() if pid != process.pid})
            time.sleep(0.2)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (out[-3000:], err[-3000:])
        assert not leaked, leaked
        assert f"http://me:***@127.0.0.1:{port}" in out, out
        assert not [n for n in needles if n in out + err], (out[-3000:], err[-3000:])
        runs = all_runs(f"http://127.0.0.1:{port}")
        assert len([r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]) == 3
        assert not [n for n in needles if n in _mlflow_params_and_tags(f"http://127.0.0.1:{port}")]
        # links in run descriptions point at the server without the user part
        assert all(f"me:" not in (r.data.tags.get("mlflow.note.content") or "") for r in runs)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server_out, _ = server.communicate(timeout=60)
    assert not [n for n in needles if n in server_out]
    assert not _files_containing(tmp_path, needles)
