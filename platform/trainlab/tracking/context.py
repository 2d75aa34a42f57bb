"""What MLflow's own UI columns read from a run: who ran it and from where, the data it trained on,
numeric hyperparameters as searchable values, and (optionally) system metrics.

MLflow's fluent API (``mlflow.start_run``) adds these itself; trainlab creates runs through the client,
which adds none of them, so each piece is added here with MLflow's own machinery.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

# MLflow 3.x keeps an experiment's kind in this tag; its UI's own kind selector writes these values.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# Numeric hyperparameters also logged as metrics at step 0: MLflow compares params as strings only,
# so ``params.lr > 0.01`` cannot be searched, ``metrics.`param/optimizer.init_args.lr` > 0.01`` can.
PARAM_METRIC_PREFIX = "param/"
_CONTEXT_TAGS = ("mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit", "mlflow.source.git.repoURL")
# The split names a datamodule's fingerprint uses -> the dataset context MLflow shows next to the name.
_SPLIT_CONTEXT = {"train": "training", "val": "validation", "test": "test"}


def context_tags() -> dict[str, str]:
    """``mlflow.user``, ``mlflow.source.name``/``.type`` and, inside a git checkout, ``mlflow.source.git.commit``:
    the tags ``mlflow.start_run`` would add, from MLflow's own context providers."""
    from mlflow.tracking.context.registry import resolve_tags

    try:
        resolved = resolve_tags()
    except Exception:  # a provider failing (odd git state, no user name) must not stop a run
        return {}
    tags = {key: str(value) for key, value in resolved.items() if key in _CONTEXT_TAGS and value}
    command = _trainlab_command()
    if command:
        tags["mlflow.source.name"] = command
    return tags


def _trainlab_command() -> str | None:
    """``trainlab study`` for a run started by that command or by a study's worker process: MLflow names the
    source after ``sys.argv[0]``, which for ``python -m trainlab`` is an unhelpful ``__main__.py``."""
    import os
    import sys

    import trainlab
    from trainlab.cli import COMMANDS

    program = sys.argv[0] if sys.argv else ""
    package = os.path.dirname(os.path.abspath(trainlab.__file__))
    if os.path.basename(program) != "trainlab" and not os.path.abspath(program).startswith(package + os.sep):
        return None
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        return f"trainlab {sys.argv[1]}"
    if os.path.abspath(program).startswith(os.path.join(package, "studies") + os.sep):
        return "trainlab study"  # a study's worker process
    return "trainlab"


def numeric_param_metrics(params: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of a run's flattened params, keyed ``param/<dotted name>``, to log at step 0.

    Booleans are flags, not quantities, and are left out, as are non-finite numbers (MLflow rejects them
    in searches). Example::

        numeric_param_metrics({"optimizer.init_args.lr": 0.01, "model.class_path": "MLP", "trainer.fast_dev_run": False})
        # {"param/optimizer.init_args.lr": 0.01}
    """
    return {
        f"{PARAM_METRIC_PREFIX}{name}": float(value)
        for name, value in params.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def log_dataset_input(client, run_id: str, name: str, fingerprint: Mapping[str, Any], source: str | None = None) -> None:
    """Log the datamodule's splits as MLflow dataset inputs (the runs table's "Dataset" column).

    ``fingerprint`` is the datamodule's ``fingerprint()``: ``{split: {"sha256": ..., "samples": n}}``.
    Each split becomes one dataset named ``name`` whose digest is the split's SHA-256 prefix, with its
    context (training/validation/test) and its sample count as profile: two runs on the same data show
    the same digest.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for split, summary in fingerprint.items():
        summary = summary if isinstance(summary, Mapping) else {"sha256": str(summary)}
        digest = str(summary.get("sha256") or hashlib.sha256(json.dumps(summary, sort_keys=True, default=str).encode()).hexdigest())
        profile = {key: value for key, value in summary.items() if key != "sha256"}
        dataset = Dataset(
            name=name,
            digest=digest[:10],
            source_type="code",  # MLflow's type for data built in code (no file or URL to point to)
            source=json.dumps({"tags": {"datamodule": source or name}}),
            profile=json.dumps(profile) if profile else None,
        )
        context = _SPLIT_CONTEXT.get(str(split), str(split))
        inputs.append(DatasetInput(dataset=dataset, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]))
    if not inputs:
        return
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception as exc:
        # Two workers logging a dataset the store has not seen yet both insert it; the second insert fails on
        # the unique key. The dataset now exists, so once more links it to this run.
        if "UNIQUE" not in str(exc).upper():
            raise
        client.log_inputs(run_id, datasets=inputs)


@contextlib.contextmanager
def system_metrics(run_id: str, tracking_uri: str, enabled: bool, sampling_interval_s: float = 10.0) -> Iterator[None]:
    """While the block runs, log MLflow's ``system/*`` metrics (CPU, memory, disk, network, GPU) to the run.

    Uses MLflow's own ``SystemMetricsMonitor`` (it needs ``psutil``; GPUs also ``nvidia-ml-py``). Example::

        with system_metrics(record.run_id, record.tracking_uri, enabled=tracking.get("system_metrics", False)):
            trainer.fit(model, datamodule=datamodule)
    """
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=sampling_interval_s, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def system_metrics_available() -> bool:
    """Whether MLflow's system-metrics monitor can run here (it samples through ``psutil``)."""
    import importlib.util

    return importlib.util.find_spec("psutil") is not None
