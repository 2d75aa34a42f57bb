"""`trainlab` command line. Heavy libraries are imported inside each command, so `--help` answers at once."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from trainlab.errors import InputError

# command name -> (module under trainlab.commands, one-line help)
COMMANDS = {
    "train": ("train", "train, validate and test one run from an experiment file"),
    "study": ("study", "run (or resume) an Optuna study described by an experiment file"),
    "runs": ("runs", "list the recent runs of an experiment"),
    "ui": ("ui", "open the MLflow UI and optuna-dashboard on the same stores"),
    "server": ("server", "start a shared MLflow tracking server for workers on several machines"),
    "reproduce": ("reproduce", "re-run a tracked run and check that it matched"),
    "diff": ("diff", "explain why two tracked runs differ"),
    "confirm": ("confirm", "re-run a study's top trials over several seeds"),
    "export": ("export", "write a run's recorded config as a file LightningCLI accepts"),
}


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; trainlab's rule is one clear line and exit code 2."""

    def error(self, message: str) -> None:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _CommandParser(_OneLineParser):
    """A command's parser: options may come anywhere, also after ``KEY=VALUE`` overrides."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_known_intermixed_args calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="trainlab", description="Lightning experiments with Optuna studies and MLflow tracking.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name, (module, help_text) in COMMANDS.items():
        command = importlib.import_module(f"trainlab.commands.{module}")
        command_parser = sub.add_parser(name, help=help_text, description=(command.__doc__ or help_text).strip())
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        command.add_arguments(command_parser)
        command_parser.set_defaults(handler=command.run)
    return parser


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )


def main(argv: list[str] | None = None) -> int:
    from trainlab.secrets import masked_terminal

    with masked_terminal():  # no password typed in a URI reaches the terminal, from us or from a library
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
        # --debug is accepted anywhere on the line, also between a command's positional arguments.
        args = parser.parse_args([a for a in argv if a != "--debug"])
        args.debug = debug
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        from trainlab.config.import_paths import make_importable
        from trainlab.training.processes import interrupt_on_sigterm

        interrupt_on_sigterm()
        make_importable(os.getcwd())  # as with `python -m`: the user's packages in the working directory import
        return int(args.handler(args) or 0)
    except InputError as exc:
        if debug:
            traceback.print_exc()
        print(f"trainlab: error: {exc.message}", file=sys.stderr)
        return 2
    except _UsageError as exc:
        print(f"trainlab: error: {exc}".replace("trainlab: error: trainlab", "trainlab"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from trainlab.training.processes import terminated

        if terminated():  # SLURM, Kubernetes, kill: one line, the run in progress already ended KILLED
            print("trainlab: terminated by SIGTERM; the run in progress ended KILLED", file=sys.stderr)
            return 143
        print("trainlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one error path for every command: one line, the traceback only with --debug
        if debug:
            raise
        code, line = describe_failure(exc)
        print(f"trainlab: error: {line}", file=sys.stderr)
        return code


def describe_failure(exc: BaseException) -> tuple[int, str]:
    """Exit code and one line for an exception no command turned into a ConfigError.

    A file or folder this user may not write (permissions, a read-only mount) is the operator's input:
    exit 2, the path named. Anything else is a failure of the command: exit 1, the exception in one line.
    """
    import errno

    from trainlab.tracking.store_lost import StoreLost

    if isinstance(exc, StoreLost):
        return 1, str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = exc.filename or "a file or folder"
        return 2, f"{where}: {exc.strerror or 'permission denied'}; expected a path this user can read and write"
    text = str(exc).strip().splitlines()
    return 1, f"{type(exc).__name__}: {text[0][:300] if text else ''} (run with --debug for the traceback)"
