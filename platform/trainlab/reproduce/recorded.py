"""What a tracked run recorded, read back from MLflow: config, environment, code diff, data fingerprint, curves."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainlab.errors import ConfigError

CONFIG, ENVIRONMENT, CODE_DIFF, DATA_FINGERPRINT = "config.yaml", "environment.json", "code.diff", "data_fingerprint.json"
# The sha256 of config.yaml as the run wrote it (tags, unlike artifacts, are not replaced by an upload).
CONFIG_SHA256_TAG = "trainlab.config_sha256"
# Params logged by fit_run that do not come from config.yaml.
_DERIVED_PARAMS = ("model.params_total", "model.params_trainable")


@dataclass
class RecordedRun:
    """One run as MLflow holds it. ``histories`` maps each metric to its ``(step, value)`` points, step = epoch.

    Example::

        recorded = load_recorded(client, "4f1c...")
        recorded.config["optimizer"]["init_args"]["lr"], recorded.histories["val/loss"][-1]
    """

    run: Any  # mlflow.entities.Run
    experiment_name: str
    config: dict[str, Any] | None
    environment: dict[str, Any] | None
    code_diff: str
    data_fingerprint: dict[str, Any] | None
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    config_path: Path | None = None  # a local copy of config.yaml, usable as an experiment file
    config_sha256: str | None = None  # of config.yaml as downloaded now

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def name(self) -> str:
        return self.run.info.run_name or self.run_id[:8]

    @property
    def status(self) -> str:
        return self.run.info.status

    @property
    def tags(self) -> dict[str, str]:
        return self.run.data.tags

    @property
    def params(self) -> dict[str, str]:
        return self.run.data.params

    @property
    def label(self) -> str | None:
        """``exact`` or ``statistical`` as recorded (None for runs recorded before trainlab labelled them)."""
        return ((self.environment or {}).get("reproducibility") or {}).get("label") or self.tags.get("trainlab.reproducibility")

    def describe(self) -> str:
        label = f", recorded as {self.label}" if self.label else ""
        return f"run {self.run_id} ({self.name}, experiment {self.experiment_name}, {self.status}{label})"


def open_store(tracking_uri: str):
    """The MLflow client for ``tracking_uri``; a store that does not exist is bad input, never a new store."""
    from trainlab.tracking.store import open_tracking_store

    return open_tracking_store(tracking_uri, create=False)


def load_recorded(client, run_id: str, required: tuple[str, ...] = (CONFIG, ENVIRONMENT), workdir: str | None = None) -> RecordedRun:
    """Read run ``run_id`` back; a missing run or a missing ``required`` artifact is a :class:`ConfigError` (exit 2).

    Artifacts are downloaded under ``workdir`` (a fresh temporary directory when None, kept for the process).
    """
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError("RUN_ID", run_id, f"the id of a run in {client.tracking_uri}", hint="`trainlab runs` lists them") from None
    present = {info.path for info in client.list_artifacts(run_id)}
    missing = [name for name in required if name not in present]
    if missing:
        raise ConfigError(f"run {run_id}", expected=f"a recorded {missing[0]} artifact", hint="it was not recorded, or was deleted from the store")
    local = Path(workdir or tempfile.mkdtemp(prefix="trainlab-recorded-")) / run_id
    local.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one progress bar per small file is noise

    def fetch(name: str) -> Path | None:
        return Path(client.download_artifacts(run_id, name, str(local))) if name in present else None

    config_path = fetch(CONFIG)
    config = _read(config_path, yaml.safe_load, run_id)
    environment = _read(fetch(ENVIRONMENT), json.loads, run_id)
    fingerprint = _read(fetch(DATA_FINGERPRINT), json.loads, run_id)
    diff_path = fetch(CODE_DIFF)
    experiment = client.get_experiment(run.info.experiment_id)
    return RecordedRun(
        run=run,
        experiment_name=experiment.name,
        config=config,
        environment=environment,
        code_diff=diff_path.read_text() if diff_path else "",
        data_fingerprint=fingerprint,
        histories=metric_histories(client, run),
        config_path=config_path,
        config_sha256=hashlib.sha256(config_path.read_bytes()).hexdigest() if config_path else None,
    )


def recorded_config(client, run_id: str) -> dict[str, Any]:
    """The resolved config a run logged as ``config.yaml`` (a valid experiment file)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as in load_recorded
    with tempfile.TemporaryDirectory(prefix="trainlab-config-") as tmp:
        local = client.download_artifacts(run_id, "config.yaml", tmp)
        return yaml.safe_load(Path(local).read_text())


def metric_histories(client, run) -> dict[str, list[tuple[int, float]]]:
    """Every metric's points sorted by step; a step written twice keeps its latest value."""
    histories = {}
    for name in sorted(run.data.metrics):
        by_step: dict[int, tuple[int, float]] = {}
        for metric in client.get_metric_history(run.info.run_id, name):
            if metric.step not in by_step or metric.timestamp >= by_step[metric.step][0]:
                by_step[metric.step] = (metric.timestamp, metric.value)
        histories[name] = [(step, value) for step, (_, value) in sorted(by_step.items())]
    return histories


def config_edits(recorded: RecordedRun, resolved: dict[str, Any] | None = None) -> list[tuple[str, str | None, str | None]]:
    """Keys where config.yaml disagrees with the params logged at run time: ``(key, param, config.yaml)``.

    MLflow params cannot be changed once logged; artifacts can. So a disagreement means config.yaml was
    edited (or replaced) after the run, and re-running it would not repeat what ran. A key deleted from
    config.yaml counts when ``resolved`` (the config as it resolves now) gives it another value.
    """
    from trainlab.tracking.run_record import _param_value, flatten  # the exact text fit_run logged

    if recorded.config is None:
        return []
    flat = {key: value for key, value in flatten(recorded.config).items() if not key.startswith("tracking.")}
    filled = flatten(resolved or {})
    params = recorded.params
    edits = []
    for key, value in flat.items():
        text = None if value is None else _param_value(value)
        if params.get(key) != text:
            edits.append((key, params.get(key), text))
    for key, logged in params.items():
        # Params that are no config key (parameter counts, a study's own bookkeeping) are not edits.
        if key not in flat and key in filled and key not in _DERIVED_PARAMS and _param_value(filled[key]) != logged:
            edits.append((key, logged, "deleted"))
    recorded_sha = recorded.tags.get(CONFIG_SHA256_TAG)
    if not edits and recorded_sha and recorded.config_sha256 and recorded_sha != recorded.config_sha256:
        # No param disagrees (a tracking key, a comment), but the file is not the one the run wrote.
        edits.append(("config.yaml", f"sha256 {recorded_sha[:12]}", f"sha256 {recorded.config_sha256[:12]} (edited)"))
    return sorted(edits)


def _read(path: Path | None, parse, run_id: str):
    if path is None:
        return None
    try:
        return parse(path.read_text())
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"run {run_id} {path.name}", expected="a readable artifact", hint=str(exc).splitlines()[0]) from None
