"""Reproducing a 2-process DDP run: Lightning re-executes `trainlab reproduce` for rank 1; one re-run, compared by rank 0."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import all_runs

pytestmark = pytest.mark.ddp


def _trainlab(workdir, *args):
    done = subprocess.run([sys.executable, "-m", "trainlab", *map(str, args)], cwd=workdir, capture_output=True, text=True, timeout=600)
    return done


def test_ddp_run_reproduces_bit_identically(workdir, fast_digits, tracking_uri):
    trained = _trainlab(workdir, "train", fast_digits, "trainer.max_epochs=2", "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    original = re.search(r"run ([0-9a-f]{32}) FINISHED", trained.stdout).group(1)

    reproduced = _trainlab(workdir, "reproduce", original)
    assert reproduced.returncode == 0, reproduced.stdout[-3000:] + reproduced.stderr[-3000:]
    assert reproduced.stdout.count("audit: recorded vs now") == 1  # rank 1 stays silent
    assert "MATCH: all" in reproduced.stdout and "bit-identical" in reproduced.stdout
    runs = all_runs(tracking_uri)
    assert len(runs) == 2 and sum("trainlab.reproduces" in r.data.tags for r in runs) == 1
