"""A web server run as a child process (the MLflow UI or tracking server, optuna-dashboard): started in its
own session, waited for until it answers, stopped as Ctrl-C would stop it.

Quiet by default: the server's own output (one access-log line per browser request, start-up notices,
deprecation warnings) goes to a temporary log file, and only its last lines are shown if it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# `trainlab ui`'s ports, and where links between the two browsers point for a local store.
MLFLOW_UI_PORT = 5000
DASHBOARD_PORT = 8080
READY_TIMEOUT_S = 120.0
_TAIL_LINES = 20


def url_for(host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


@dataclass
class WebServer:
    """Example::

        server = WebServer.start("MLflow UI", [sys.executable, "-m", "mlflow", "server", ...], "http://127.0.0.1:5000", "/health", uri)
        server.wait_ready()
        ...
        server.stop()
    """

    name: str
    process: subprocess.Popen
    url: str
    probe: str
    serves: str
    log: tempfile._TemporaryFileWrapper | None = field(default=None, repr=False)

    @classmethod
    def start(cls, name: str, command: list[str], url: str, probe: str, serves: str, verbose: bool = True, env: dict[str, str] | None = None) -> "WebServer":
        log = None if verbose else tempfile.NamedTemporaryFile(prefix="trainlab-server-", suffix=".log")
        # Own session: a server's worker processes are stopped together, by group.
        process = subprocess.Popen(
            command,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            env={**os.environ, **(env or {})},
        )
        return cls(name, process, url, url + probe, serves, log)

    def wait_ready(self) -> None:
        from trainlab.errors import ConfigError

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(self.name, self.url, "a server that starts (is the port free?)", hint=self.failure(f"exit code {self.process.returncode}"))
            try:
                with urllib.request.urlopen(self.probe, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise ConfigError(self.name, self.url, f"a server that answers within {READY_TIMEOUT_S:.0f} s", hint=self.failure("no answer"))

    def failure(self, what: str) -> str:
        """``what``, followed by the last lines the server wrote when its output was kept aside."""
        if self.log is None:
            return what
        self.log.flush()
        with open(self.log.name, errors="replace") as handle:
            tail = handle.read().splitlines()[-_TAIL_LINES:]
        return what + ("; its last output:\n  " + "\n  ".join(tail) if tail else "")

    def stop(self) -> None:
        # SIGINT, as Ctrl-C in a terminal would send: gunicorn (optuna-dashboard) treats SIGTERM as a
        # graceful stop that waits for the browser's open connections, SIGINT as a quick one.
        try:
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
        finally:
            if self.log is not None:
                self.log.close()
