"""Browse runs and studies: the MLflow UI on the tracking store and optuna-dashboard on the study storage.

Both bind to 127.0.0.1 unless --host says otherwise; neither has authentication, so binding to another
interface exposes every run to whoever can reach the port. Ctrl-C stops both.
  trainlab ui
  trainlab ui --port 5001 --dashboard-port 8081 --storage postgresql://me@db/optuna
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
READY_TIMEOUT_S = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    add_tracking_uri(parser)
    parser.add_argument("--storage", default=None, help="Optuna storage to show (default: optuna_journal.log next to mlflow.db)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; anything else is reachable "
                        "from the network without authentication)")
    parser.add_argument("--port", type=int, default=5000, help="MLflow UI port (default 5000)")
    parser.add_argument("--dashboard-port", type=int, default=8080, help="optuna-dashboard port (default 8080)")


def run(args: argparse.Namespace) -> int:
    from trainlab.errors import ConfigError
    from trainlab.studies.storage import is_rdb_url, public_url, resolve_storage_url
    from trainlab.tracking.store import resolve_tracking_uri

    for flag, port in (("--port", args.port), ("--dashboard-port", args.dashboard_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(flag, port, "a TCP port between 1 and 65535")
    if args.port == args.dashboard_port:
        raise ConfigError("--dashboard-port", args.dashboard_port, "a port other than --port")
    uri = resolve_tracking_uri(args.tracking_uri)
    storage = resolve_storage_url(args.storage, uri)
    if args.host not in LOOPBACK:
        print(
            f"trainlab: warning: binding to {args.host}: the MLflow UI and optuna-dashboard have no authentication; "
            "anyone who can reach these ports can read (and change) every run and study",
            file=sys.stderr,
        )

    servers: list[_Server] = []
    try:
        if uri.startswith(("http://", "https://")):
            print(f"{'MLflow UI:':<18}{uri}   (the tracking server itself)")
        else:
            mlflow_command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port), "--workers", "1"]
            servers.append(_Server.start("MLflow UI", mlflow_command, _url(args.host, args.port), "/health", uri))
        dashboard = _dashboard_command(storage, args.host, args.dashboard_port, is_rdb_url(storage))
        if dashboard:
            servers.append(_Server.start("optuna-dashboard", dashboard, _url(args.host, args.dashboard_port), "/", public_url(storage)))
        for server in servers:
            server.wait_ready()
        for server in servers:
            print(f"{server.name + ':':<18}{server.url}   ({server.serves})")
        if not servers:
            return 0
        print("Ctrl-C stops them.", flush=True)
        while True:
            for server in servers:
                if server.process.poll() is not None:
                    print(f"trainlab: error: {server.name} stopped (exit code {server.process.returncode})", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping...", flush=True)
        return 0
    finally:
        for server in servers:
            server.stop()


@dataclass
class _Server:
    name: str
    process: subprocess.Popen
    url: str
    probe: str
    serves: str

    @classmethod
    def start(cls, name: str, command: list[str], url: str, probe: str, serves: str) -> "_Server":
        # Own session: a server's worker processes are stopped together, by group.
        process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        return cls(name, process, url, url + probe, serves)

    def wait_ready(self) -> None:
        from trainlab.errors import ConfigError

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(self.name, self.url, "a server that starts (is the port free?)", hint=f"exit code {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.probe, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise ConfigError(self.name, self.url, f"a server that answers within {READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        # SIGINT, as Ctrl-C in a terminal would send: gunicorn (optuna-dashboard) treats SIGTERM as a
        # graceful stop that waits for the browser's open connections, SIGINT as a quick one.
        for sig, wait_s in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
            if self.process.poll() is not None:
                return
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue


def _dashboard_command(storage: str, host: str, port: int, is_rdb: bool) -> list[str] | None:
    executable = Path(sys.executable).with_name("optuna-dashboard")
    program = str(executable) if executable.exists() else shutil.which("optuna-dashboard")
    if program is None:
        print("trainlab: optuna-dashboard is not installed (pip install optuna-dashboard); starting the MLflow UI only", file=sys.stderr)
        return None
    if not is_rdb and not Path(storage).is_file():
        print(f"trainlab: no study storage at {storage} yet (run trainlab study first); starting the MLflow UI only", file=sys.stderr)
        return None
    return [program, storage, "--host", host, "--port", str(port)]


def _url(host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"
