"""A 2-"node" DDP run on loopback: two torchrun launchers (--nnodes 2, gloo) produce one MLflow run."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import all_runs

pytestmark = pytest.mark.ddp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_node_run_on_loopback_is_one_run(workdir, fast_digits, tracking_uri, mlflow_client):
    port = _free_port()
    launchers = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
             "-m", "trainlab", "train", str(fast_digits), "trainer.max_epochs=2", "trainer.num_nodes=2",
             "trainer.devices=1", "trainer.strategy=ddp", "trainer.accelerator=cpu"],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in (0, 1)
    ]
    outputs = [launcher.communicate(timeout=600)[0] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]

    runs = all_runs(tracking_uri)
    assert len(runs) == 1
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "train/loss")] == [0, 1]
    environment = mlflow_client.download_artifacts(run.info.run_id, "environment.json", str(workdir))
    import json

    distributed = json.load(open(environment))["distributed"]
    assert distributed["world_size"] == 2 and distributed["num_nodes"] == 2
    assert run.info.run_id in outputs[0] and "FINISHED" not in outputs[1]
