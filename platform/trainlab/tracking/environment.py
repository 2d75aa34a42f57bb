"""What a run ran on: packages, interpreter, hardware, code version, seed and determinism settings.

Recorded with every run (``environment.json`` plus ``code.diff`` for a dirty tree) so that
``trainlab reproduce`` can say what changed since, and labelled **exact** (a re-run on the same
environment should be bit-identical) or **statistical** (only the distribution of results repeats).

What cannot change while a process runs (installed packages, hardware, the git state of the code it
imported) is read once per process and reused by every later run in it: a study worker records many
trials, and reading every package's metadata plus a dozen git calls cost a large part of a short trial.
The per-run parts (seed, determinism settings, torch threads, world size, argv) are read for each run.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from trainlab.secrets import mask_argv, mask_text

# Packages whose version can change the numbers a run produces; any other package is recorded too,
# but a change there is reported without breaking the expectation of an exact reproduction. Tracking and
# search (mlflow, optuna, cmaes, optuna-dashboard) record and choose configs; they compute nothing a run
# trains on, so they are not here.
KEY_PACKAGES = ("torch", "lightning", "torchmetrics", "numpy", "scikit-learn", "scipy", "jsonargparse", "trainlab")
EXACT, STATISTICAL = "exact", "statistical"
# The only environment variables whose values a run records (they steer threads, devices, hashing and
# determinism). Any other variable may hold a credential (MLFLOW_TRACKING_PASSWORD, PGPASSWORD, a token)
# and is never recorded. Documented in the README.
RECORDED_ENVIRONMENT_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "PL_SEED_WORKERS",
    "PL_GLOBAL_SEED",
)


def capture_environment(trainer=None, *, seed: int | None = None, code_of: Iterable[Any] = ()) -> tuple[dict[str, Any], str]:
    """Return ``(environment, diff)``; ``diff`` is the uncommitted change of every code repository involved.

    ``code_of``: objects or classes (model, datamodule) whose source repositories are recorded besides the working
    directory's and trainlab's own, so a model living in another checkout is versioned too.

    Example::

        environment, diff = capture_environment(trainer, seed=42, code_of=(model, datamodule))
        environment["reproducibility"]  # {"label": "exact", "reasons": []}
    """
    import torch

    repos, diff = _code_state_once(_code_paths(code_of))
    process = _process_facts()
    environment = {
        "python": process["python"],
        "platform": process["platform"],
        "seed": seed,
        "packages": dict(process["packages"]),
        "all_packages": dict(process["all_packages"]),
        "hardware": _hardware(torch, process["hardware"]),
        "git": repos[0] if repos else {"commit": None, "branch": None, "dirty": None, "root": None},
        "code_repos": repos,
        "determinism": _determinism(torch, trainer),
        "distributed": _distributed(trainer),
        "argv": mask_argv(sys.argv),
        "cwd": os.getcwd(),  # relative paths in the config (data files) mean something only from here
        "environment_variables": recorded_environment_variables(),
    }
    label, reasons = reproducibility(environment)
    environment["reproducibility"] = {"label": label, "reasons": reasons}
    return environment, diff


def recorded_environment_variables() -> dict[str, str]:
    """The values of :data:`RECORDED_ENVIRONMENT_VARIABLES` that are set; nothing else from the environment."""
    return {name: mask_text(os.environ[name]) for name in RECORDED_ENVIRONMENT_VARIABLES if name in os.environ}


def reproducibility(environment: dict[str, Any]) -> tuple[str, list[str]]:
    """Label a recorded environment **exact** or **statistical**, with the reasons for the latter.

    Exact means: same code, packages, hardware and data should give bit-identical curves, because the
    run was seeded and every source of run-to-run nondeterminism that trainlab knows of was switched off.
    """
    reasons = []
    determinism = environment.get("determinism") or {}
    distributed = environment.get("distributed") or {}
    on_gpu = bool((environment.get("hardware") or {}).get("gpus")) and "CUDA" in str(distributed.get("accelerator"))
    if environment.get("seed") is None:
        reasons.append("no seed: seed_everything is false")
    for missing in (environment.get("user_code") or {}).get("not_captured") or []:  # see tracking/user_code.py
        reasons.append(f"user code not captured: {missing}")
    if not determinism.get("deterministic_algorithms"):
        reasons.append("deterministic algorithms off: trainer.deterministic is false")
    elif not determinism.get("seed_workers", True):
        reasons.append("dataloader workers not seeded")
    if on_gpu:
        if determinism.get("deterministic_warn_only"):
            reasons.append("deterministic algorithms only warn: with trainer.deterministic 'warn', GPU ops without a deterministic kernel still run")
        if determinism.get("cudnn_benchmark"):
            reasons.append("cuDNN benchmark on: kernels are chosen by timing")
        if not determinism.get("CUBLAS_WORKSPACE_CONFIG"):
            reasons.append("CUBLAS_WORKSPACE_CONFIG unset: cuBLAS reductions are not deterministic")
        if (distributed.get("world_size") or 1) > 1:
            reasons.append(f"{distributed['world_size']} GPU processes: NCCL does not guarantee the order of reductions")
    return (STATISTICAL if reasons else EXACT), reasons


def forget_process_environment() -> None:
    """Read packages, hardware and git state afresh at the next capture (they are kept for the process)."""
    _process_facts.cache_clear()
    _git_roots.clear()
    _git_states.clear()


@functools.cache
def _process_facts() -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _imported_version(name) for name in KEY_PACKAGES},
        "all_packages": installed_packages(),
        "hardware": _static_hardware(torch),
    }


# Repository root of each code path, and git state (with diff) of each root, as first read in this process.
_git_roots: dict[str, str | None] = {}
_git_states: dict[str, tuple[dict[str, Any], str]] = {}


def _code_state_once(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], str]:
    """:func:`code_state`, each repository read once per process: the code a process imported does not change."""
    for path in paths:
        if str(path) not in _git_roots:
            _git_roots[str(path)] = _git_root(path)
    states = []
    for root in _distinct(_git_roots[str(path)] for path in paths):
        if root not in _git_states:
            _git_states[root] = _git_state(Path(root))
        states.append(copy.deepcopy(_git_states[root]))
    return _combine(states)


def installed_packages() -> dict[str, str]:
    """Every installed distribution with its exact version."""
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower()] = dist.version
    return dict(sorted(packages.items()))


def code_state(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], str]:
    """Git state (commit, branch, dirty, digest of the diff) of each distinct repository holding ``paths``.

    Returns the states and the combined diff text; with several repositories each diff is preceded by a
    ``# repository`` line (``git apply`` skips text before the first ``diff --git``).
    """
    return _combine([_git_state(Path(root)) for root in _distinct(_git_root(path) for path in paths)])


def _git_root(path: Path) -> str | None:
    root = _git(["rev-parse", "--show-toplevel"], path)
    return root.strip() if root and root.strip() else None


def _distinct(roots: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(root for root in roots if root))


def _combine(states: list[tuple[dict[str, Any], str]]) -> tuple[list[dict[str, Any]], str]:
    repos = [state for state, _ in states]
    diffs = [diff for _, diff in states]
    if len(repos) > 1:
        text = "".join(f"# repository {r['name']} ({r['root']}) at {r['commit']}\n{d}" for r, d in zip(repos, diffs) if d)
    else:
        text = diffs[0] if diffs else ""
    return repos, text


def _code_paths(code_of: Iterable[Any]) -> list[Path]:
    import trainlab

    paths = [Path.cwd(), Path(trainlab.__file__).parent]
    for obj in code_of:
        try:
            source = inspect.getsourcefile(obj if inspect.isclass(obj) else type(obj))
        except TypeError:  # built-in class
            continue
        if source:
            paths.append(Path(source).parent)
    return paths


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


_IMPORT_NAMES = {"scikit-learn": "sklearn"}


def _imported_version(name: str) -> str | None:
    """The installed version, unless the code Python imports under that name is a folder elsewhere on
    ``sys.path`` (a ``numpy/`` in the working directory): then that folder is what ran, and is recorded."""
    version = _version(name)
    if version is None:
        return None
    import importlib.util

    try:
        dist = metadata.distribution(name)
        if json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"):
            return version  # an editable install runs from its source folder by design
        spec = importlib.util.find_spec(_IMPORT_NAMES.get(name, name))
    except (ImportError, ValueError, metadata.PackageNotFoundError):
        return version
    origin = spec.origin if spec and spec.origin else next(iter(spec.submodule_search_locations or []), None) if spec else None
    if origin is None:
        return version
    site = Path(str(dist.locate_file(""))).resolve()
    if site in Path(origin).resolve().parents:
        return version
    return f"{version} shadowed by {Path(origin).resolve().parent}"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _git_state(root: Path) -> tuple[dict[str, Any], str]:
    commit = (_git(["rev-parse", "HEAD"], root) or "").strip() or None
    untracked = (_git(["ls-files", "--others", "--exclude-standard"], root) or "").split()
    diff = ((_git(["diff", "HEAD", "--no-color"], root) or "") if commit else "") + _untracked_code_diff(root, untracked)
    remote = (_git(["config", "--get", "remote.origin.url"], root) or "").strip()
    return {
        # Repositories are matched across machines by name (remote URL, else folder name), not by path.
        "name": remote or root.name,
        "commit": commit,
        "branch": (_git(["rev-parse", "--abbrev-ref", "HEAD"], root) or "").strip() if commit else None,
        "dirty": bool(diff) or bool(untracked),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "diff_files": _diff_files(diff),
        "untracked": untracked[:200],
        "root": str(root),
    }, diff


def _untracked_code_diff(root: Path, untracked: list[str], limit: int = 1_000_000) -> str:
    """New Python files not yet added to git, as diffs against /dev/null: code the run used that ``git diff`` misses.

    Only ``*.py``: other untracked files (the MLflow store itself, data, outputs) change with every run.
    """
    parts = []
    for name in untracked:
        path = root / name
        if name.endswith(".py") and path.is_file() and path.stat().st_size <= limit:
            try:  # --no-index exits 1 when the files differ, which is always the case here
                out = subprocess.run(["git", "diff", "--no-color", "--no-index", "--", "/dev/null", name], cwd=root, capture_output=True, text=True, timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                continue
            parts.append(out.stdout)
    return "".join(parts)


def _diff_files(diff: str) -> list[str]:
    return [line.split(" b/", 1)[1] for line in diff.splitlines() if line.startswith("diff --git ") and " b/" in line]


def _hardware(torch, static: dict[str, Any]) -> dict[str, Any]:
    """The process's hardware facts, with the torch thread count of this run (a run may set it)."""
    hardware = {key: static[key] for key in ("cpu", "cpu_count", "cpu_capability")}  # the recorded key order
    hardware["torch_threads"] = torch.get_num_threads()
    hardware.update({key: copy.deepcopy(value) for key, value in static.items() if key not in hardware})
    return hardware


def _static_hardware(torch) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hardware: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        # The vector instruction set and the thread count (torch_threads, per run) pick CPU kernels and
        # split reductions: either can change the last bits of a float result.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
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
        # Lightning's seed_everything(workers=True) sets it; its worker_init_fn then seeds each DataLoader worker.
        "seed_workers": os.environ.get("PL_SEED_WORKERS") == "1",
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "precision": str(getattr(trainer, "precision", None)) if trainer is not None else None,
    }


def _distributed(trainer) -> dict[str, Any]:
    if trainer is None:
        return {"world_size": 1}
    return {
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices": trainer.num_devices,
        "device_ids": list(getattr(trainer, "device_ids", []) or []),
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(trainer.strategy).__name__,
    }
