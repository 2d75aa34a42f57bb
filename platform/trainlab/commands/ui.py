"""Browse runs and studies: the MLflow UI on the tracking store and optuna-dashboard on the study storage.

Both bind to 127.0.0.1 unless --host says otherwise; neither has authentication, so binding to another
interface exposes every run to whoever can reach the port. Ctrl-C stops both. The servers' own output
(access logs, warnings) is kept out of the terminal unless --verbose; a server that fails shows its last lines.
  trainlab ui
  trainlab ui --port 5001 --dashboard-port 8081 --storage postgresql://me@db/optuna
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from trainlab.web_server import DASHBOARD_PORT, LOOPBACK, MLFLOW_UI_PORT, WebServer, url_for

# What the servers print that a user browsing does not need: Python's deprecation notices.
_QUIET_ENV = {"PYTHONWARNINGS": "ignore"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    add_tracking_uri(parser)
    parser.add_argument("--storage", default=None, help="Optuna storage to show (default: optuna_journal.log next to mlflow.db)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; anything else is reachable "
                        "from the network without authentication)")
    parser.add_argument("--port", type=int, default=MLFLOW_UI_PORT, help=f"MLflow UI port (default {MLFLOW_UI_PORT})")
    parser.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT, help=f"optuna-dashboard port (default {DASHBOARD_PORT})")
    parser.add_argument("--verbose", action="store_true", help="show the servers' own output (access logs, warnings)")


def run(args: argparse.Namespace) -> int:
    from trainlab.errors import ConfigError
    from trainlab.commands.server import backend_store_environment
    from trainlab.secrets import mask_uri, without_credentials
    from trainlab.studies.storage import is_rdb_url, resolve_storage_url
    from trainlab.tracking.store import check_tracking_store, resolve_tracking_uri

    for flag, port in (("--port", args.port), ("--dashboard-port", args.dashboard_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(flag, port, "a TCP port between 1 and 65535")
    if args.port == args.dashboard_port:
        raise ConfigError("--dashboard-port", args.dashboard_port, "a port other than --port")
    uri = resolve_tracking_uri(args.tracking_uri)
    storage = resolve_storage_url(args.storage, uri)
    check_tracking_store(uri, create=False)  # a reading command never creates a store
    if args.host not in LOOPBACK:
        print(
            f"trainlab: warning: binding to {args.host}: the MLflow UI and optuna-dashboard have no authentication; "
            "anyone who can reach these ports can read (and change) every run and study",
            file=sys.stderr,
        )

    servers: list[WebServer] = []
    env = {} if args.verbose else _QUIET_ENV
    private_folder = Path(tempfile.mkdtemp(prefix="trainlab-ui-"))  # 0700; removed when the servers stop
    try:
        if uri.startswith(("http://", "https://")):
            print(f"{'MLflow UI:':<18}{without_credentials(uri)}   (the tracking server itself)")
        else:
            mlflow_command = [sys.executable, "-m", "mlflow", "server", "--host", args.host, "--port", str(args.port), "--workers", "1"]
            if not args.verbose:
                mlflow_command += ["--uvicorn-opts", "--no-access-log --log-level warning"]
            mlflow_env = {**env, **backend_store_environment(uri)}  # the store's URI stays out of argv
            servers.append(WebServer.start("MLflow UI", mlflow_command, url_for(args.host, args.port), "/health", mask_uri(uri), args.verbose, mlflow_env))
        dashboard = _dashboard_command(storage, args.host, args.dashboard_port, is_rdb_url(storage), args.verbose, private_folder)
        if dashboard:
            servers.append(WebServer.start("optuna-dashboard", dashboard, url_for(args.host, args.dashboard_port), "/", mask_uri(storage), args.verbose, env))
        for server in servers:
            server.wait_ready()
        for server in servers:
            print(f"{server.name + ':':<18}{server.url}   ({server.serves})")
        if not servers:
            return 0
        print("In the MLflow UI, studies and runs are under \"Model training\" (switch at the top left; the browser remembers it).")
        print("Ctrl-C stops them.", flush=True)
        while True:
            for server in servers:
                if server.process.poll() is not None:
                    print(f"trainlab: error: {server.failure(f'{server.name} stopped (exit code {server.process.returncode})')}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping...", flush=True)
        return 0
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(private_folder, ignore_errors=True)


def _dashboard_command(storage: str, host: str, port: int, is_rdb: bool, verbose: bool, private_folder: Path) -> list[str] | None:
    executable = Path(sys.executable).with_name("optuna-dashboard")
    program = str(executable) if executable.exists() else shutil.which("optuna-dashboard")
    if program is None:
        print("trainlab: optuna-dashboard is not installed (pip install optuna-dashboard); starting the MLflow UI only", file=sys.stderr)
        return None
    if not is_rdb and not Path(storage).is_file():
        print(f"trainlab: no study storage at {storage} yet (run trainlab study first); starting the MLflow UI only", file=sys.stderr)
        return None
    # The storage URL (perhaps with a password) goes in a config file only this user can read, not in argv.
    config = private_folder / "optuna-dashboard.toml"
    config.write_text(f"[optuna_dashboard]\nstorage = {json.dumps(storage)}\n")
    config.chmod(0o600)
    return [program, "--from-config", str(config), "--host", host, "--port", str(port), *([] if verbose else ["--quiet"])]

