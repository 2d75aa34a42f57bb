"""One trial: sample values, apply them to the run config, train through ``fit_run``, tell Optuna.

A trial is a normal tracked run (``fit_run``, the one training path) with sampled values, a parent run
and a pruning callback. :func:`run_trial` does the training part and can be called in any process that
holds the trial (a later multi-process trial re-attaches with :func:`run_trial_by_number`);
:func:`execute_trial` adds the Optuna bookkeeping around it for the worker that asked for the trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def run_trial(trial, context: TrialContext) -> float:
    """Train one trial through ``fit_run`` and return its objective: the best epoch value of the metric.

    Raises ``optuna.TrialPruned`` when pruned, ``RunEnded`` when the run failed (its reason recorded in
    MLflow), ``ConfigError`` when the sampled values make an invalid config.
    """
    from trainlab.config import resolve_run_config
    from trainlab.training import fit_run

    spec = context.spec
    values = spec.space.sample(trial)
    run = apply_params(context.experiment.run, values)
    set_dotted(run, "tracking.run_name", f"{spec.name}-trial-{trial.number}")
    config = resolve_run_config(run)
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


def execute_trial(study, trial, context: TrialContext):
    """Run ``trial`` and tell Optuna how it ended: COMPLETE, PRUNED or FAIL (reason in a user attr).

    A failing trial never stops the study; a :class:`MetricNotLogged` error does (no trial could ever
    be judged), after its trial is failed. Ctrl-C fails the trial and propagates. Returns the FrozenTrial.
    """
    import optuna
    from optuna.trial import TrialState

    from trainlab.training.fit_run import RunEnded

    fatal: BaseException | None = None
    try:
        with heartbeat(trial):
            value = run_trial(trial, context)
        frozen = study.tell(trial, value)
    except optuna.TrialPruned:
        frozen = study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        _fail(study, trial, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except RunEnded as ended:
        frozen = _fail(study, trial, ended.result.reason or ended.result.status)
        if isinstance(ended.__cause__, MetricNotLogged):
            fatal = ended.__cause__
    except MetricNotLogged as exc:
        frozen = _fail(study, trial, exc.message)
        fatal = exc
    except ConfigError as exc:
        frozen = _fail(study, trial, f"sampled values make an invalid config: {exc.message}")
    except Exception as exc:  # a trial's own error is recorded; the study goes on
        frozen = _fail(study, trial, f"{type(exc).__name__}: {exc}")
    if fatal is not None:
        raise fatal
    return frozen


def run_trial_by_number(storage_url: str, study_name: str, trial_number: int, tracking_uri: str) -> float:
    """Re-attach to a RUNNING trial through the storage and train it here (for a trial run as its own
    process group: rank 0 reports and prunes through the storage). Values already sampled for the trial
    are reused; Optuna returns the stored value for a parameter the trial already has."""
    import optuna

    from trainlab.studies.loading import context_for, load_existing_study

    study, storage = load_existing_study(storage_url, study_name)
    # Optuna has no public "trial by number" for a running trial; its integrations re-attach the same way.
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
    trial = optuna.trial.Trial(study, trial_id)
    return run_trial(trial, context_for(study, tracking_uri))


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
