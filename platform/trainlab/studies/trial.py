"""One trial: sample values, apply them to the run config, train through ``fit_run``, tell Optuna.

A trial is a normal tracked run (``fit_run``, the one training path) with sampled values, a parent run
and a pruning callback. :func:`attempt_trial` trains it in the process that holds the trial and says how
it ended (a :class:`TrialOutcome`); :func:`execute_trial` adds the Optuna bookkeeping for the worker that
asked for the trial, and hands a trial that needs several processes (DDP) to its own process group
(:mod:`trainlab.studies.trial_process`), whose rank 0 calls :func:`attempt_trial` in turn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from lightning.pytorch.callbacks import Callback

from trainlab.config.experiment import Experiment, set_dotted
from trainlab.errors import ConfigError
from trainlab.studies.search_space import apply_params
from trainlab.studies.spec import StudySpec
from trainlab.studies.stale import FAIL_REASON_ATTR, heartbeat

MLFLOW_RUN_ATTR = "mlflow_run_id"
TEST_METRICS_ATTR = "trainlab.test_metrics"


@dataclass
class TrialContext:
    """What every trial of a study shares: the experiment, its study spec, where runs are tracked."""

    experiment: Experiment
    spec: StudySpec
    tracking_uri: str
    parent_run_id: str | None
    storage_url: str | None = None  # where a trial's own process group re-attaches to it
    devices_per_trial: int | None = None


@dataclass
class TrialOutcome:
    """How one attempt at a trial ended, plain enough to cross from a trial's process group as JSON.

    ``state`` is "complete" (with ``value``), "pruned" or "fail" (with ``reason``); ``fatal`` holds the
    fields of a :class:`MetricNotLogged` error, which stops the whole study.
    """

    state: str
    value: float | None = None
    reason: str | None = None
    fatal: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class MetricNotLogged(ConfigError):
    """The study metric never appears among the model's epoch metrics: no trial can be judged."""


class TrialPruning(Callback):
    """Reports the study metric to Optuna after every validation and stops the trial when pruned.

    Also fails the trial when a loss or the metric becomes NaN/inf: Optuna's pruners would otherwise
    prune such a trial as merely "worse", and a diverged trial is a failure with a reason, not a result.
    optuna_integration's PyTorchLightningPruningCallback reports NaN as a value and needs RDBStorage under
    DDP; here rank 0 reports and broadcasts the decision, so any storage works.

    Example::

        trainer = L.Trainer(callbacks=[TrialPruning(trial, "val/acc")])
    """

    def __init__(self, trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _fail_if_not_finite(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        _fail_if_not_finite(trainer)
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise _metric_not_logged(self.monitor, trainer.callback_metrics)
        if not math.isfinite(float(value)):
            raise FloatingPointError(f"{self.monitor} became {float(value)} at epoch {trainer.current_epoch}")
        epoch = trainer.current_epoch
        prune = False
        if trainer.is_global_zero and self.trial is not None:
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):
            import optuna

            raise optuna.TrialPruned(f"at epoch {epoch} with {self.monitor}={float(value):.4g}")


def trial_config(trial, context: TrialContext):
    """The resolved run config of ``trial``: its sampled values (sampled now, or the ones it already has)
    applied to the study's run config. Raises ``ConfigError`` when they make an invalid config."""
    from trainlab.config import resolve_run_config
    from trainlab.studies.devices import with_devices_per_trial

    spec = context.spec
    values = spec.space.sample(trial)
    run = with_devices_per_trial(apply_params(context.experiment.run, values), context.devices_per_trial)
    set_dotted(run, "tracking.run_name", f"{spec.name}-trial-{trial.number}")
    return resolve_run_config(run)


def run_trial(trial, context: TrialContext, config=None) -> float:
    """Train one trial through ``fit_run`` and return its objective: the best epoch value of the metric.

    Raises ``optuna.TrialPruned`` when pruned, ``RunEnded`` when the run failed (its reason recorded in
    MLflow), ``ConfigError`` when the sampled values make an invalid config.
    """
    from trainlab.training import fit_run

    spec = context.spec
    config = config or trial_config(trial, context)
    tags = {"trainlab.kind": "trial", "trainlab.study": spec.name, "trainlab.trial": str(trial.number)}
    result = fit_run(
        config,
        context.tracking_uri,
        parent_run_id=context.parent_run_id,
        tags=tags,
        callbacks=[TrialPruning(trial, spec.metric)],
        on_run_created=lambda run_id: trial.set_user_attr(MLFLOW_RUN_ATTR, run_id),
    )
    trial.set_user_attr(TEST_METRICS_ATTR, {k: v for k, v in result.metrics.items() if k.startswith("test/")})
    return objective_value(result.history, spec)


def objective_value(history: dict[str, list[tuple[int, float]]], spec: StudySpec) -> float:
    """The best value of the metric over the epochs (the epoch the checkpoint keeps, for the monitor)."""
    points = history.get(spec.metric)
    if not points:
        raise _metric_not_logged(spec.metric, history)
    values = [value for _, value in points]
    best = max(values) if spec.direction == "maximize" else min(values)
    if not math.isfinite(best):
        raise FloatingPointError(f"{spec.metric} is {best}")
    return best


def attempt_trial(trial, context: TrialContext, config=None) -> TrialOutcome:
    """Train ``trial`` here and say how it ended. A trial's own error never escapes (the study goes on);
    Ctrl-C and SIGTERM do."""
    import optuna

    from trainlab.training.fit_run import RunEnded

    try:
        return TrialOutcome("complete", value=run_trial(trial, context, config))
    except optuna.TrialPruned:
        return TrialOutcome("pruned")
    except RunEnded as ended:
        cause = ended.__cause__
        return TrialOutcome("fail", reason=ended.result.reason or ended.result.status, fatal=_fatal(cause) if isinstance(cause, MetricNotLogged) else None)
    except MetricNotLogged as exc:
        return TrialOutcome("fail", reason=exc.message, fatal=_fatal(exc))
    except ConfigError as exc:
        return TrialOutcome("fail", reason=f"sampled values make an invalid config: {exc.message}")
    except Exception as exc:  # a trial's own error is recorded; the study goes on
        return TrialOutcome("fail", reason=f"{type(exc).__name__}: {exc}")


def execute_trial(study, trial, context: TrialContext):
    """Run ``trial`` and tell Optuna how it ended: COMPLETE, PRUNED or FAIL (reason in a user attr).

    A trial whose config needs several processes (``trainer.devices: 2, strategy: ddp``) runs as its own
    process group while this worker keeps its heartbeat and waits. A failing trial never stops the study;
    a :class:`MetricNotLogged` error does (no trial could ever be judged), after its trial is failed.
    Ctrl-C fails the trial and propagates. Returns the FrozenTrial.
    """
    from trainlab.training.processes import processes_for
    from trainlab.studies.trial_process import run_in_process_group

    try:
        with heartbeat(trial):
            try:
                config = trial_config(trial, context)
                ranks = processes_for(config.document["trainer"])
                outcome = run_in_process_group(trial, context, ranks) if ranks > 1 else attempt_trial(trial, context, config)
            except ConfigError as exc:
                outcome = TrialOutcome("fail", reason=f"sampled values make an invalid config: {exc.message}")
            except Exception as exc:  # launching a process group can fail too (no memory, no processes left)
                outcome = TrialOutcome("fail", reason=f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        _fail(study, trial, "interrupted (Ctrl-C or SIGTERM)")
        raise
    frozen = _tell(study, trial, outcome)
    if outcome.fatal is not None:
        raise MetricNotLogged(**outcome.fatal)
    return frozen


def _tell(study, trial, outcome: TrialOutcome):
    from optuna.trial import TrialState

    if outcome.state == "complete":
        return study.tell(trial, outcome.value)
    if outcome.state == "pruned":
        return study.tell(trial, state=TrialState.PRUNED)
    return _fail(study, trial, outcome.reason or "failed")


def _fatal(exc: MetricNotLogged) -> dict[str, Any]:
    return {"key": exc.key, "value": exc.value, "expected": exc.expected}


def _fail(study, trial, reason: str):
    from optuna.trial import TrialState

    trial.set_user_attr(FAIL_REASON_ATTR, reason[:2000])
    return study.tell(trial, state=TrialState.FAIL)


def _fail_if_not_finite(trainer) -> None:
    for name, value in trainer.callback_metrics.items():
        if ("loss" in name.split("/")[-1]) and not math.isfinite(float(value)):
            raise FloatingPointError(f"{name} became {float(value)} at epoch {trainer.current_epoch}")


def _metric_not_logged(metric: str, logged: Any) -> MetricNotLogged:
    names = ", ".join(sorted(name for name in logged if "/" in name)[:12]) or "none"
    return MetricNotLogged("study.metric", metric, f"a metric the model logs each epoch (logged: {names})")
