"""The stores under faults: a journal cut mid-record, a study folder this user cannot write, a tracking URI that
names nothing, PostgreSQL connections per worker. Real files, real Optuna storages, the real CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import all_runs, need, postgres_available

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _study_file(folder: Path, n_trials: int = 2) -> Path:
    document = {
        "seed_everything": 0,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [16]}},
        "data": {"class_path": "Digits", "init_args": {"batch_size": 128}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        "tracking": {"experiment": "stores"},
        "study": {"name": "stores", "metric": "val/acc", "direction": "maximize", "n_trials": n_trials, "sampler": {"type": "random", "seed": 0}},
        "search_space": {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o644)
    return path


# -- fault 1: a partial last record in the journal -------------------------------------------------------------


def _journal_with_trials(path: Path, n: int = 2) -> None:
    import optuna

    from trainlab.studies.storage import open_storage

    study = optuna.create_study(study_name="j", storage=open_storage(str(path)))
    for i in range(n):
        study.tell(study.ask(), float(i))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-7], id="cut-mid-record"),
        pytest.param(lambda data: data + b'{"op_code": 5, "worker', id="half-appended"),
        pytest.param(lambda data: data + b'{"op_code": 5, "wor\n', id="garbled-line-with-newline"),
    ],
)
def test_a_partial_last_journal_record_is_dropped_on_open(tmp_path, damage, capfd):
    import optuna

    from trainlab.studies.storage import open_storage

    journal = tmp_path / "optuna_journal.log"
    _journal_with_trials(journal)
    whole = journal.read_bytes()
    journal.write_bytes(damage(whole))
    capfd.readouterr()

    study = optuna.load_study(study_name="j", storage=open_storage(str(journal)))
    study.tell(study.ask(), 9.0)  # the next append starts on a line of its own

    err = [line for line in capfd.readouterr().err.strip().splitlines() if line.startswith("trainlab")]
    assert len(err) == 1 and "dropped a partial last record" in err[0] and str(journal) in err[0], err
    assert journal.read_bytes().endswith(b"\n")
    reopened = optuna.load_study(study_name="j", storage=open_storage(str(journal)))
    assert [t.state.name for t in reopened.trials][-1] == "COMPLETE" and reopened.trials[-1].value == 9.0
    assert "trainlab" not in capfd.readouterr().err, "an intact journal is opened without a word"


def test_an_intact_journal_is_left_byte_for_byte(tmp_path):
    from trainlab.studies.storage import open_storage, repair_journal_tail

    journal = tmp_path / "optuna_journal.log"
    _journal_with_trials(journal)
    before = journal.read_bytes()
    open_storage(str(journal))
    assert repair_journal_tail(str(journal)) == 0
    assert journal.read_bytes() == before
    assert not Path(f"{journal}.lock").exists(), "the lock is released"


def _trainlab(*args, cwd: Path, **env_values: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env_values
    return subprocess.run([sys.executable, "-m", "trainlab", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_a_study_whose_journal_was_cut_mid_write_resumes_with_the_cli(workdir, tracking_uri):
    """The issue's test: truncate the journal's last line of a real study and resume it.

    Real processes for both invocations: a trial owned by a live process (this one) would not be reaped.
    """
    import optuna

    path = _study_file(workdir, n_trials=2)
    first = _trainlab("study", path, cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    journal = workdir / "optuna_journal.log"
    data = journal.read_bytes()
    journal.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1 + 10])  # the last record cut after 10 bytes

    again = _trainlab("study", path, "--n-trials", "3", cwd=workdir)

    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    notes = [line for line in again.stderr.splitlines() if "dropped a partial last record" in line]
    assert len(notes) == 1, again.stderr[-3000:]
    from trainlab.studies.storage import open_storage

    study = optuna.load_study(study_name="stores", storage=open_storage(str(journal)))
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and states.count("COMPLETE") + states.count("PRUNED") >= 3, states
    runs = all_runs(tracking_uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs if r.data.tags.get("trainlab.kind") == "study"] == ["FINISHED"]


# -- fault 6: a study folder this user cannot write -----------------------------------------------------------


def _run_cli_as_nobody(folder: Path, argv: list[str]) -> tuple[int, str]:
    """``trainlab ARGV`` in ``folder`` in a forked child that dropped root (root ignores permissions)."""
    from trainlab.cli import main
    from trainlab.config.run_config import run_parser

    run_parser()
    # Imported here: the child, as nobody, may not be able to read this interpreter's files (under /root).
    for module in ("sqlite3", "filelock", "optuna.storages.journal", "sqlalchemy.dialects.sqlite", "mlflow.tracking",
                   "trainlab.studies.worker", "trainlab.studies.loading", "trainlab.studies.parent_run", "trainlab.studies.report",
                   "trainlab.studies.spec", "trainlab.studies.stale", "trainlab.training.processes"):
        __import__(module)
    err_path = Path(tempfile.mkdtemp()) / "err"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT, 0o666)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout's "starting" line is progress, not the error
            sys.stderr = os.fdopen(fd, "w", buffering=1)  # pytest's capture replaced both
            sys.stdout = open(os.devnull, "w")
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)  # nobody
            os.chdir(folder)
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            os.environ["HOME"] = str(folder)
            code = main(argv)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err_path.read_text()


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("folder", id="read-only-study-folder"),
        pytest.param("journal", id="read-only-journal-in-writable-folder"),
    ],
)
def test_a_study_folder_that_cannot_be_written_is_one_line_exit_2(where):
    """Run as a non-root user: the study folder (or the journal in it) belongs to root and is read-only."""
    folder = Path(tempfile.mkdtemp(prefix="trainlab-ro-"))
    try:
        folder.chmod(0o755)
        path = _study_file(folder)
        if where == "journal":
            (folder / "optuna_journal.log").write_text("")
            (folder / "optuna_journal.log").chmod(0o444)
            folder.chmod(0o777)
        else:
            folder.chmod(0o555)
        before = sorted(os.listdir(folder))

        code, err = _run_cli_as_nobody(folder, ["study", str(path)])

        lines = err.strip().splitlines()
        assert code == 2, err
        assert "Traceback" not in err and len(lines) == 1, err
        # Both stores sit in that folder; the first one checked is named, with the folder to fix.
        assert ("optuna_journal.log" in lines[0] or "mlflow.db" in lines[0]) and "write" in lines[0], lines
        assert sorted(os.listdir(folder)) == before, "nothing was written beside the study"
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


# -- stores that do not exist, bogus schemes --------------------------------------------------------------------


def test_reading_a_missing_sqlite_store_creates_nothing(tmp_path):
    from trainlab.errors import ConfigError
    from trainlab.tracking.store import open_tracking_store

    uri = f"sqlite:///{tmp_path}/missing/dir/x.db"
    with pytest.raises(ConfigError) as raised:
        open_tracking_store(uri, create=False)
    assert raised.value.key == "--tracking-uri" and "never create" in raised.value.message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("foo://x", "unknown scheme foo://"),
        ("sqlite:///{tmp}/a.txt/x.db", "a.txt is a file"),
        ("sqlite:///{tmp}/no/such/dir/x.db", "does not exist"),
        ("sqlite:///{tmp}/a.txt", "a SQLite database file"),
    ],
)
def test_a_store_that_cannot_work_is_refused_before_writing(tmp_path, uri, fragment):
    from trainlab.errors import ConfigError
    from trainlab.tracking.store import check_tracking_store

    (tmp_path / "a.txt").write_text("not a database")
    uri = uri.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as raised:
        check_tracking_store(uri, create=True)
    assert fragment in raised.value.message and uri in raised.value.message
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_sqlite_paths_are_parsed_in_one_place():
    from trainlab.tracking.store import resolve_tracking_uri, sqlite_path

    assert sqlite_path("sqlite:////abs/mlflow.db") == "/abs/mlflow.db"
    assert sqlite_path("sqlite:///rel/mlflow.db") == "rel/mlflow.db"
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("postgresql://h/db") is None
    assert resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{os.path.abspath('rel.db')}"


@pytest.mark.parametrize(
    "storage, fragment",
    [
        ("foo://x", "unknown scheme foo://"),
        ("{tmp}/a.txt/optuna_journal.log", "a.txt is a file"),
        ("{tmp}", "not a directory"),
    ],
)
def test_a_study_storage_that_cannot_work_is_refused(tmp_path, storage, fragment):
    from trainlab.errors import ConfigError
    from trainlab.studies.storage import check_storage_url

    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError) as raised:
        check_storage_url(storage.format(tmp=tmp_path))
    assert raised.value.key == "--storage" and fragment in raised.value.message


# -- PostgreSQL ---------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgresql_missing_database_and_unreachable_server_are_one_line():
    need(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    from trainlab.errors import ConfigError
    from trainlab.studies.storage import check_storage_url
    from trainlab.tracking.store import check_tracking_store

    with pytest.raises(ConfigError) as missing:
        check_storage_url("postgresql://postgres@127.0.0.1:5432/no_such_db_trainlab")
    assert "database 'no_such_db_trainlab' on 127.0.0.1:5432" in missing.value.message and "existing" in missing.value.message
    with pytest.raises(ConfigError) as unreachable:
        check_tracking_store("postgresql://postgres@127.0.0.1:1/x", create=True)
    assert "a reachable database 'x' on 127.0.0.1:1" in unreachable.value.message
    assert len(unreachable.value.message.splitlines()) == 1


@pytest.mark.postgres
def test_a_worker_holds_at_most_two_postgresql_connections():
    """Fault 7: four threads of one worker share its storage; the server sees at most two connections from it."""
    need(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import threading

    import optuna
    import sqlalchemy

    from trainlab.studies.storage import open_storage

    tag = f"trainlab-pool-{uuid.uuid4().hex[:8]}"
    url = f"{POSTGRES_URL}?application_name={tag}"
    name = f"pool-{tag}"
    monitor = sqlalchemy.create_engine(POSTGRES_URL, poolclass=sqlalchemy.pool.NullPool)
    seen: list[int] = []
    lock = threading.Lock()

    def connections() -> int:
        with monitor.connect() as connection:
            return connection.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :t"), {"t": tag}).scalar()

    def objective(trial):
        for step in range(3):
            trial.report(trial.suggest_float("x", 0, 1), step)
            with lock:
                seen.append(connections())
        return trial.params["x"]

    storage = open_storage(url)
    try:
        study = optuna.create_study(study_name=name, storage=storage)
        study.optimize(objective, n_trials=12, n_jobs=4)
        assert len(study.trials) == 12
        assert seen and max(seen) <= 2, seen
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        storage.engine.dispose()
        monitor.dispose()


@pytest.fixture
def small_postgres(tmp_path):
    """A private PostgreSQL server with max_connections=20 (the issue's "too many clients" setting)."""
    import socket

    bin_dir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    need(bin_dir is not None and (bin_dir / "initdb").exists(), "PostgreSQL server binaries (initdb, pg_ctl)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # the server refuses to run as root
    data = Path(tempfile.mkdtemp(prefix="trainlab-pg-"))
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres", "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -c max_connections=20 -c listen_addresses=127.0.0.1 -k {data} -c fsync=off"
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        for database in ("optuna", "mlflow"):
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.integration
def test_four_workers_fit_in_a_server_with_max_connections_20(workdir, small_postgres):
    """Fault 7: `--jobs 4` with both the study and MLflow on one PostgreSQL that allows 20 clients."""
    import optuna

    path = _study_file(workdir, n_trials=4)
    result = _trainlab("study", path, "--jobs", "4", "--storage", f"{small_postgres}/optuna", "--tracking-uri", f"{small_postgres}/mlflow", cwd=workdir)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "too many clients" not in result.stderr
    study = optuna.load_study(study_name="stores", storage=f"{small_postgres}/optuna")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4 and "FAIL" not in states, states
    runs = all_runs(f"{small_postgres}/mlflow")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 5, "the parent run and one run per trial"


# -- a new SQLite store: copied from MLflow's own empty store, kept per MLflow version; WAL mode --------------------


@pytest.mark.integration
def test_new_stores_are_copies_of_one_empty_store_and_commit_through_a_write_ahead_log(tmp_path):
    """Two first runs in two new folders: the first builds the empty store once (MLflow's migrations, into the
    cache), the second copies it; each folder's Default experiment points into that folder, both stores are
    complete MLflow stores in WAL mode, and nothing but the store is left beside it."""
    import sqlite3

    import mlflow
    from mlflow.tracking import MlflowClient

    cache = tmp_path / "cache"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    study = _study_file(tmp_path, n_trials=1)
    errs = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        result = _trainlab("train", study, cwd=folder, TRAINLAB_CACHE=str(cache))
        assert result.returncode == 0, result.stderr[-3000:]
        errs.append(result.stderr)
        assert template.exists(), "the empty store is kept in the cache"
        store = folder / "mlflow.db"
        assert not list(folder.glob("mlflow.db-*")), "the write-ahead log is folded back when the command ends"
        with contextlib.closing(sqlite3.connect(store)) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        client = MlflowClient(f"sqlite:///{store}")
        assert client.get_experiment("0").artifact_location == str(folder / "mlruns" / "0")
        [run] = client.search_runs([client.get_experiment_by_name("stores").experiment_id])
        assert run.info.status == "FINISHED" and "val/acc" in run.data.metrics
    assert "Creating initial MLflow database tables" in errs[0], "the first store is built by MLflow's migrations"
    assert "Creating initial MLflow database tables" not in errs[1], "the second is a copy"
    with contextlib.closing(sqlite3.connect(template)) as connection:
        assert connection.execute("SELECT count(*) FROM experiments").fetchone()[0] == 0, "the cached store holds no experiment"
