"""Every kind of mistake a user can make on the command line, one row each, over every command.

The rule for each row: exit code 2, one to three lines on stderr, no traceback, the bad key (and where it
can be, the value) named, and nothing written: no mlflow.db, no journal, no run folder. The CLI runs in this
process, forked once per row (a fresh interpreter per row would cost seconds each; a fork costs nothing and
keeps rows from seeing each other's state).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import STUDIES

ROW_TIMEOUT_S = 180  # a row that starts training by mistake is stopped, and fails
DEAD_PORT = "1"  # nothing listens on port 1


def _experiment(**changes) -> str:
    """The demo experiment (with its study sections), shortened to one epoch, with ``a__b=value`` changes."""
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document["trainer"]["max_epochs"] = 1
    document["study"]["n_trials"] = 1
    for dotted, value in changes.items():
        node = document
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(document, sort_keys=False)


_DELETE = object()


def row(name, argv, fragments, files=None, marks=()):
    return pytest.param(argv, fragments, files or {}, id=name, marks=marks)




ROWS = [
    # -- train: the shape of the experiment file -----------------------------------------------------------------
    row("section-given-a-scalar", ["train", "e.yaml", "trainer=5"], ["trainer: got 5", "mapping"]),
    row("tracking-section-scalar", ["train", "e.yaml", "tracking=3"], ["tracking: got 3", "mapping"]),
    row("diagnostics-section-scalar", ["train", "e.yaml", "diagnostics=5"], ["diagnostics", "5"]),
    row("model-section-scalar", ["train", "e.yaml", "model=5"], ["model: got 5", "class_path"]),
    row("data-section-list", ["train", "e.yaml", "data=[1]"], ["data: got [1]", "class_path"]),
    row("optimizer-section-scalar", ["train", "e.yaml", "optimizer=5"], ["optimizer: got 5", "class_path"]),
    row("scheduler-section-scalar", ["train", "e.yaml", "lr_scheduler=5"], ["lr_scheduler: got 5", "class_path"]),
    row("misspelled-init_args", ["train", "e.yaml", "model.init_arg.x=1"], ["model.init_arg", "{'x': 1}", "did you mean 'init_args'"]),
    row("init_args-scalar", ["train", "e.yaml", "model.init_args=5"], ["model.init_args: got 5", "mapping"]),
    row("unknown-section", ["train", "e.yaml", "trainr.max_epochs=1"], ["trainr", "top-level section"]),
    row("override-into-a-scalar", ["train", "e.yaml", "model.class_path.x=1"], ["model.class_path", "mapping"]),
    row("override-without-equals", ["train", "e.yaml", "trainer.max_epochs"], ["trainer.max_epochs", "dotted.key=value"]),
    row("override-bad-yaml", ["train", "e.yaml", "model.init_args.dropout=[0.1"], ["model.init_args.dropout", "YAML value"]),
    row("missing-file", ["train", "nope.yaml"], ["nope.yaml", "existing experiment file"]),
    row("invalid-yaml", ["train", "bad.yaml"], ["bad.yaml:", "valid YAML"], files={"bad.yaml": "model:\n  init_args: [unclosed\n"}),
    row("file-is-a-list", ["train", "list.yaml"], ["list.yaml", "got 'list'", "mapping"], files={"list.yaml": "- 1\n- 2\n"}),
    row("empty-file", ["train", "empty.yaml"], ["model", "class_path"], files={"empty.yaml": ""}),
    # -- train: values ------------------------------------------------------------------------------------------------
    row("negative-seed", ["train", "e.yaml", "seed_everything=-5"], ["seed_everything: got -5", "0 to 4294967295"]),
    row("seed-not-a-number", ["train", "e.yaml", "seed_everything=abc"], ["seed_everything: got 'abc'", "integer"]),
    row("seed-a-float", ["train", "e.yaml", "seed_everything=1.5"], ["seed_everything: got 1.5", "integer"]),
    row("zero-epochs", ["train", "e.yaml", "trainer.max_epochs=0"], ["trainer.max_epochs: got 0", ">= 1"]),
    row("zero-steps", ["train", "e.yaml", "trainer.max_steps=0"], ["trainer.max_steps: got 0", ">= 1"]),
    row("negative-epochs", ["train", "e.yaml", "trainer.max_epochs=-2"], ["max_epochs", "-2"]),
    row("epochs-not-a-number", ["train", "e.yaml", "trainer.max_epochs=ten"], ["trainer.max_epochs: got 'ten'", "an int"]),
    row("no-validation-batches", ["train", "e.yaml", "trainer.limit_val_batches=0"], ["trainer.limit_val_batches: got 0", "enable_checkpointing"]),
    row("empty-validation-split", ["train", "e.yaml", "data.init_args.val_fraction=0"], ["data.init_args.val_fraction: got 0", "(0, 1)"]),
    row("validation-fraction-above-1", ["train", "e.yaml", "data.init_args.val_fraction=1.5"], ["data.init_args.val_fraction: got 1.5", "[0, 1)"]),
    row("empty-test-split", ["train", "e.yaml", "data.init_args.test_fraction=0"], ["data.init_args.test_fraction: got 0", "(0, 1)"]),
    row("zero-batch-size", ["train", "e.yaml", "data.init_args.batch_size=0"], ["data.init_args.batch_size: got 0", "> 0"]),
    row("negative-batch-size", ["train", "e.yaml", "data.init_args.batch_size=-1"], ["data.init_args.batch_size: got -1", "> 0"]),
    row("empty-experiment-name", ["train", "e.yaml", "tracking.experiment="], ["tracking.experiment: got None", "non-empty"]),
    row("blank-experiment-name", ["train", "blank.yaml"], ["tracking.experiment: got '  '", "non-empty"], files={"blank.yaml": _experiment(tracking__experiment="  ")}),
    row("tags-not-a-mapping", ["train", "e.yaml", "tracking.tags=5"], ["tracking.tags: got 5", "dict"]),
    row("run-name-a-list", ["train", "e.yaml", "tracking.run_name=[1]"], ["tracking.run_name: got [1]", "str"]),
    row("unknown-model-argument", ["train", "e.yaml", "model.init_args.dropot=0.5"], ["model.init_args.dropot: got 0.5", "did you mean 'dropout'"]),
    row("unknown-trainer-argument", ["train", "e.yaml", "trainer.max_epoch=3"], ["trainer.max_epoch: got 3", "did you mean 'max_epochs'"]),
    row("choice-not-offered", ["train", "e.yaml", "model.init_args.activation=nope"], ["model.init_args.activation: got 'nope'", "relu"]),
    row("list-of-wrong-items", ["train", "e.yaml", "model.init_args.hidden_sizes=[a]"], ["model.init_args.hidden_sizes: got ['a']", "integer > 0"]),
    row("dropout-of-1", ["train", "e.yaml", "model.init_args.dropout=1.0"], ["model.init_args.dropout: got 1.0", "[0, 1)"]),
    row("negative-learning-rate", ["train", "e.yaml", "optimizer.init_args.lr=-0.1"], ["optimizer.init_args.lr: got -0.1", "> 0"]),
    row("negative-weight-decay", ["train", "e.yaml", "optimizer.init_args.weight_decay=-1"], ["optimizer.init_args.weight_decay: got -1", ">= 0"]),
    row("unknown-optimizer", ["train", "e.yaml", "optimizer.class_path=torch.optim.NoSuch"], ["optimizer.class_path", "torch.optim.NoSuch"]),
    row("unknown-model-class", ["train", "e.yaml", "model.class_path=NoSuchNet"], ["model.class_path", "NoSuchNet"]),
    row("model-not-a-lightning-module", ["train", "e.yaml", "model.class_path=torch.nn.Linear"], ["model.class_path", "LightningModule"]),
    row("data-not-a-datamodule", ["train", "e.yaml", "data.class_path=torch.nn.Linear"], ["data.class_path", "LightningDataModule"]),
    row("precision-not-offered", ["train", "e.yaml", "trainer.precision=13"], ["trainer.precision: got 13", "one of 64, 32, 16"]),
    row("callbacks-a-number", ["train", "e.yaml", "trainer.callbacks=5"], ["trainer.callbacks: got 5", "a list"]),
    row("negative-clipping", ["train", "e.yaml", "trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val: got -1", ">= 0"]),
    row("unknown-accelerator", ["train", "e.yaml", "trainer.accelerator=tpu9"], ["trainer", "tpu9"]),
    row("zero-devices", ["train", "e.yaml", "trainer.devices=0"], ["devices=0"]),
    row("scheduler-missing-argument", ["train", "e.yaml", "lr_scheduler.class_path=torch.optim.lr_scheduler.StepLR"], ["lr_scheduler", "step_size"]),
    row("unknown-flag", ["train", "e.yaml", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    row("no-file-given", ["train"], ["FILE", "an experiment file", "--resume RUN_ID"]),
    row("resume-with-a-file", ["train", "e.yaml", "--resume", "abc"], ["--resume", "abc", "no FILE and no override but trainer.max_epochs=N"]),
    row("train-bogus-tracking-scheme", ["train", "e.yaml", "--tracking-uri", "foo://x"], ["--tracking-uri", "foo://x"]),
    row("train-store-in-missing-folder", ["train", "e.yaml", "--tracking-uri", "sqlite:///nodir/x.db"], ["--tracking-uri", "nodir/x.db", "does not exist"]),
    row("train-store-under-a-file", ["train", "e.yaml", "--tracking-uri", "sqlite:///a.txt/x.db"], ["--tracking-uri", "a.txt is a file"], files={"a.txt": "x"}),
    row("train-store-not-sqlite", ["train", "e.yaml", "--tracking-uri", "sqlite:///a.txt"], ["--tracking-uri", "a.txt", "SQLite database"], files={"a.txt": "not a database"}),
    row("train-unreachable-server", ["train", "e.yaml", "--tracking-uri", f"http://127.0.0.1:{DEAD_PORT}"], ["--tracking-uri", f"127.0.0.1:{DEAD_PORT}", "reachable"]),
    # -- study ------------------------------------------------------------------------------------------------------------
    row("zero-jobs", ["study", "e.yaml", "--jobs", "0"], ["--jobs: got 0", ">= 1"]),
    row("zero-devices-per-trial", ["study", "e.yaml", "--devices-per-trial", "0"], ["--devices-per-trial: got 0", ">= 1"]),
    row("zero-trials", ["study", "e.yaml", "--n-trials", "0"], ["--n-trials: got 0", ">= 1"]),
    row("jobs-not-a-number", ["study", "e.yaml", "--jobs", "two"], ["--jobs", "'two'", "int"]),
    row("bad-timeout", ["study", "e.yaml", "--timeout", "soon"], ["--timeout: got 'soon'", "10m"]),
    row("test-metric-steers", ["study", "e.yaml", "study.metric=test/acc"], ["study.metric: got 'test/acc'", "validation metric"]),
    row("unknown-direction", ["study", "e.yaml", "study.direction=up"], ["study.direction: got 'up'", "minimize or maximize"]),
    row("unknown-sampler", ["study", "e.yaml", "study.sampler=nope"], ["study.sampler.type: got 'nope'", "tpe"]),
    row("unknown-pruner", ["study", "e.yaml", "study.pruner.type=nope"], ["study.pruner.type: got 'nope'", "median"]),
    row("unknown-study-key", ["study", "e.yaml", "study.bogus=1"], ["study.bogus", "n_trials"]),
    row("study-section-scalar", ["study", "e.yaml", "study=5"], ["study: got 5", "mapping"]),
    row("study-zero-trials-in-file", ["study", "e.yaml", "study.n_trials=0"], ["study.n_trials: got 0", ">= 1"]),
    row("negative-retries", ["study", "e.yaml", "study.retry_failed=-1"], ["study.retry_failed: got -1", ">= 0"]),
    row("no-search-space", ["study", "nospace.yaml"], ["search_space", "config keys to search"], files={"nospace.yaml": _experiment(search_space=_DELETE)}),
    row("search-space-unknown-key", ["study", "typo.yaml"], ["dropot"], files={"typo.yaml": _experiment(search_space={"model.init_args.dropot": {"low": 0.0, "high": 0.5}})}),
    row("search-space-range-out-of-bounds", ["study", "wide.yaml"], ["search_space.model.init_args.dropout", "[0, 1)"], files={"wide.yaml": _experiment(search_space={"model.init_args.dropout": {"low": 0.0, "high": 1.5}})}),
    row("study-zero-epochs", ["study", "e.yaml", "trainer.max_epochs=0"], ["trainer.max_epochs: got 0"]),
    row("study-bogus-storage-scheme", ["study", "e.yaml", "--storage", "foo://x"], ["--storage", "foo://x", "unknown scheme"]),
    row("study-journal-under-a-file", ["study", "e.yaml", "--storage", "a.txt/journal.log"], ["--storage", "a.txt is a file"], files={"a.txt": "x"}),
    row("study-journal-is-a-folder", ["study", "e.yaml", "--storage", "."], ["--storage", "not a directory"]),
    row("study-storage-unreachable-postgres", ["study", "e.yaml", "--storage", f"postgresql://postgres@127.0.0.1:{DEAD_PORT}/optuna"], ["--storage", f"database 'optuna' on 127.0.0.1:{DEAD_PORT}", "reachable"]),
    row("study-bogus-tracking-scheme", ["study", "e.yaml", "--tracking-uri", "foo://x"], ["--tracking-uri", "foo://x"]),
    row("study-tracking-store-missing-folder", ["study", "e.yaml", "--tracking-uri", "sqlite:///nodir/x.db"], ["--tracking-uri", "does not exist"]),
    # -- runs ------------------------------------------------------------------------------------------------------------
    row("runs-zero-limit", ["runs", "--limit", "0"], ["--limit: got 0", ">= 1"]),
    row("runs-limit-not-a-number", ["runs", "--limit", "many"], ["--limit", "'many'", "int"]),
    row("runs-missing-store", ["runs", "--tracking-uri", "sqlite:///missing/dir/x.db"], ["--tracking-uri", "never create"]),
    row("runs-bogus-scheme", ["runs", "--tracking-uri", "foo://x"], ["--tracking-uri", "foo://x", "unknown scheme"]),
    row("runs-default-store-missing", ["runs", "--experiment", "nope"], ["--tracking-uri", "mlflow.db"]),
    # -- reproduce ------------------------------------------------------------------------------------------------------
    row("reproduce-missing-store", ["reproduce", "abc"], ["--tracking-uri", "mlflow.db", "never create"]),
    row("reproduce-negative-tolerance", ["reproduce", "abc", "--tolerance", "-1"], ["--tolerance: got -1", ">= 0"]),
    row("reproduce-bogus-scheme", ["reproduce", "abc", "--tracking-uri", "foo://x"], ["--tracking-uri: got 'foo://x'", "unknown scheme"]),
    row("reproduce-unreachable-server", ["reproduce", "abc", "--tracking-uri", f"http://127.0.0.1:{DEAD_PORT}"], ["--tracking-uri", "reachable MLflow tracking server"]),
    row("reproduce-no-run-id", ["reproduce"], ["the following arguments are required: RUN_ID"]),
    row("reproduce-store-under-a-file", ["reproduce", "abc", "--tracking-uri", "sqlite:///a.txt/x.db"], ["--tracking-uri", "a.txt is a file"], files={"a.txt": "x"}),
    # -- diff -------------------------------------------------------------------------------------------------------------
    row("diff-missing-store", ["diff", "a", "b"], ["--tracking-uri", "never create"]),
    row("diff-html-in-missing-folder", ["diff", "a", "b", "--html", "/nonexistent/dir/x.html"], ["--html: got '/nonexistent/dir/x.html'", "existing directory"]),
    row("diff-one-run-only", ["diff", "a"], ["the following arguments are required: RUN_B"]),
    row("diff-store-not-sqlite", ["diff", "a", "b", "--tracking-uri", "sqlite:///a.txt"], ["--tracking-uri", "SQLite database"], files={"a.txt": "not a database"}),
    row("diff-unreachable-postgres", ["diff", "a", "b", "--tracking-uri", f"postgresql://postgres@127.0.0.1:{DEAD_PORT}/mlflow"], ["--tracking-uri", "database 'mlflow'", "reachable"]),
    # -- confirm ----------------------------------------------------------------------------------------------------------
    row("confirm-zero-top-k", ["confirm", "s", "--top-k", "0"], ["--top-k: got 0", ">= 1"]),
    row("confirm-one-seed", ["confirm", "s", "--seeds", "1"], ["--seeds: got 1", ">= 2"]),
    row("confirm-missing-store", ["confirm", "s"], ["--tracking-uri", "never create"]),
    row("confirm-bogus-scheme", ["confirm", "s", "--tracking-uri", "foo://x"], ["--tracking-uri: got 'foo://x'", "unknown scheme"]),
    # -- ui and server ------------------------------------------------------------------------------------------------
    row("ui-port-zero", ["ui", "--port", "0"], ["--port: got 0", "between 1 and 65535"]),
    row("ui-port-too-high", ["ui", "--port", "70000"], ["--port: got 70000", "between 1 and 65535"]),
    row("ui-same-ports", ["ui", "--port", "5000", "--dashboard-port", "5000"], ["--dashboard-port: got 5000", "other than --port"]),
    row("ui-port-not-a-number", ["ui", "--port", "http"], ["--port", "'http'", "int"]),
    row("ui-missing-store", ["ui", "--tracking-uri", "sqlite:///missing.db"], ["--tracking-uri", "never create"]),
    row("server-port-zero", ["server", "--backend-store-uri", "sqlite:///x.db", "--port", "0"], ["--port: got 0", "between 1 and 65535"]),
    row("server-zero-workers", ["server", "--backend-store-uri", "sqlite:///x.db", "--workers", "0"], ["--workers: got 0", ">= 1"]),
    row("server-store-not-a-uri", ["server", "--backend-store-uri", "mlflow.db"], ["--backend-store-uri: got 'mlflow.db'", "postgresql://"]),
    row("server-no-store", ["server"], ["the following arguments are required: --backend-store-uri"]),
    row("unknown-command", ["trian", "e.yaml"], ["invalid choice: 'trian'"]),
]


@pytest.fixture(scope="module")
def warm_cli():
    """Import everything a command imports once, here: each forked row then starts at once."""
    import lightning  # noqa: F401
    import mlflow.tracking  # noqa: F401
    import optuna  # noqa: F401
    import sqlalchemy.dialects.postgresql  # noqa: F401
    import sqlalchemy.dialects.sqlite  # noqa: F401

    from trainlab import cli
    from trainlab.config.run_config import run_parser

    cli.build_parser()
    run_parser()
    return cli


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run_forked(cli, folder: Path, argv: list[str]) -> tuple[int, str]:
    err_path = folder.parent / f"{folder.name}.stderr"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(fd, 2)
            sys.stdout = open(os.devnull, "w")
            sys.stderr = os.fdopen(fd, "w", buffering=1)  # pytest's capture replaced both
            # This worker may have trained in-process before: a forked child that enters OpenMP's parallel
            # regions with the parent's thread pool hangs (libgomp is not fork-safe). One thread never does.
            import torch

            torch.set_num_threads(1)
            os.chdir(folder)
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            code = cli.main(argv)
        except BaseException:  # a crash is a finding: keep its traceback for the assertion message
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + ROW_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9, err_path.read_text() + f"\n(row stopped after {ROW_TIMEOUT_S} s)"
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(status), err_path.read_text()


@pytest.mark.parametrize("argv, fragments, files", ROWS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(warm_cli, tmp_path, argv, fragments, files):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "e.yaml").write_text(_experiment())
    for name, text in files.items():
        (folder / name).write_text(text)
    before = _files(folder)

    code, err = _run_forked(warm_cli, folder, argv)

    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert 1 <= len(lines) <= 3, err
    message = lines[-1]
    assert message.startswith("trainlab"), err
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert _files(folder) == before, f"bad input wrote {sorted(_files(folder) - before)}"


def test_the_table_covers_every_command_with_sixty_rows():
    commands = {p.values[0][0] for p in ROWS if p.values[0]}
    assert len(ROWS) >= 60
    assert {"train", "study", "runs", "reproduce", "diff", "confirm", "ui", "server"} <= commands
