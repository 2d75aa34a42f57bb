"""What a run ran on: packages, interpreter, hardware, code version and determinism settings.

Recorded with every run (``environment.json`` plus ``code.diff`` for a dirty tree) so that
``trainlab reproduce`` can say what changed since.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("torch", "lightning", "torchmetrics", "mlflow", "optuna", "numpy", "scikit-learn", "jsonargparse", "trainlab")


def capture_environment(trainer=None) -> tuple[dict[str, Any], str]:
    """Return ``(environment, diff)``; ``diff`` is the uncommitted change of the working tree ('' when clean)."""
    import torch

    git, diff = _git_state(Path.cwd())
    environment = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in KEY_PACKAGES},
        "all_packages": sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]),
        "hardware": _hardware(torch),
        "git": git,
        "determinism": _determinism(torch, trainer),
        "distributed": _distributed(trainer),
        "argv": sys.argv,
    }
    return environment, diff


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _git_state(cwd: Path) -> tuple[dict[str, Any], str]:
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": None, "branch": None, "dirty": None, "root": None}, ""
    diff = _git(["diff", "HEAD", "--no-color"], cwd) or ""
    untracked = (_git(["ls-files", "--others", "--exclude-standard"], cwd) or "").split()
    return {
        "commit": commit.strip(),
        "branch": (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or "").strip(),
        "dirty": bool(diff) or bool(untracked),
        "untracked": untracked[:200],
        "root": (_git(["rev-parse", "--show-toplevel"], cwd) or "").strip(),
    }, diff


def _hardware(torch) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hardware: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    hardware["cuda"] = torch.version.cuda
    hardware["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        hardware["driver"] = _nvidia_driver()
    else:
        hardware["gpus"] = []
    return hardware


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _determinism(torch, trainer) -> dict[str, Any]:
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "PL_SEED_WORKERS": os.environ.get("PL_SEED_WORKERS"),
        "precision": str(getattr(trainer, "precision", None)) if trainer is not None else None,
    }


def _distributed(trainer) -> dict[str, Any]:
    if trainer is None:
        return {"world_size": 1}
    return {
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices": trainer.num_devices,
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(trainer.strategy).__name__,
    }
