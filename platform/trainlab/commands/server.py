"""Start the shared MLflow tracking server that workers on several machines log to.

Backed by a database (PostgreSQL for many writers) with artifacts proxied through the server, so workers
need only its URL, not access to the artifact store:
  trainlab server --backend-store-uri postgresql://postgres@db-host/mlflow --artifacts-destination /data/mlartifacts --host 0.0.0.0
Workers then run: trainlab study FILE --storage postgresql://postgres@db-host/optuna --tracking-uri http://server-host:5000
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend-store-uri", required=True, help="database for runs, e.g. postgresql://user@host/mlflow")
    parser.add_argument("--artifacts-destination", default="./mlartifacts", help="where the server stores artifacts (default ./mlartifacts)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; use 0.0.0.0 for other machines)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--workers", type=int, default=4, help="server worker processes (default 4)")


def mlflow_server_command(artifacts_destination: str, host: str, port: int, workers: int) -> list[str]:
    """The server's command line; its backend store goes in :func:`backend_store_environment`, never in argv."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", artifacts_destination,
        "--serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]
    if host not in ("127.0.0.1", "localhost", "::1"):
        # MLflow 3 rejects Host headers it does not know; workers on other machines use this host's name.
        command += ["--allowed-hosts", "*"]
    return command


def backend_store_environment(backend_store_uri: str) -> dict[str, str]:
    """``mlflow server`` reads ``--backend-store-uri`` from this variable too: a database password stays out of ``ps``."""
    return {"MLFLOW_BACKEND_STORE_URI": backend_store_uri}


def run(args: argparse.Namespace) -> int:
    import time

    from trainlab.errors import ConfigError
    from trainlab.web_server import LOOPBACK, WebServer, url_for

    if not 1 <= args.port <= 65535:
        raise ConfigError("--port", args.port, "a TCP port between 1 and 65535")
    if args.workers < 1:
        raise ConfigError("--workers", args.workers, "an integer >= 1")
    if "://" not in args.backend_store_uri:
        raise ConfigError("--backend-store-uri", args.backend_store_uri, "a database URI such as postgresql://user@host/mlflow")
    if args.host not in LOOPBACK:
        print(
            f"trainlab: warning: binding to {args.host}: the MLflow server has no authentication; "
            "anyone who can reach this port can read and change every run",
            file=sys.stderr,
        )
    from trainlab.secrets import mask_uri

    command = mlflow_server_command(args.artifacts_destination, args.host, args.port, args.workers)
    store = mask_uri(args.backend_store_uri)
    server = WebServer.start("MLflow server", command, url_for(args.host, args.port), "/health", store, env=backend_store_environment(args.backend_store_uri))
    try:
        server.wait_ready()
        print(f"MLflow tracking server: {server.url}   (runs in {store}, artifacts in {args.artifacts_destination})")
        print(f"workers: trainlab study FILE --tracking-uri {server.url} --storage postgresql://...   Ctrl-C stops the server.", flush=True)
        while server.process.poll() is None:
            time.sleep(0.5)
        print(f"trainlab: error: MLflow server stopped (exit code {server.process.returncode})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
