"""One trial: sample values, apply them to the run config, train through ``launch``, tell Optuna.

A trial is a normal tracked run (:func:`~trainlab.training.launch.launch`, the one way a run starts) with
sampled values, a parent run and a :class:`TrialRole`: its pruning callback, and the trial's MLflow run id
recorded on the trial as soon as the run exists. A trial that needs several processes (DDP) trains as its
own process group, whose rank 0 re-attaches to the RUNNING trial through the study storage to report and
be pruned (:meth:`TrialRole.from_launch`); the worker keeps the trial's heartbeat, waits, and tells Optuna.
:func:`attempt_trial` trains a trial and says how it ended (a :class:`TrialOutcome`); :func:`execute_trial`
adds the Optuna bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lightning.pytorch.callbacks import Callback

from trainlab.config.experiment import Experiment, set_dotted
from trainlab.contract import best_by_direction
from trainlab.errors import ConfigError
from trainlab.secrets import mask_text
from trainlab.studies.loading import PARENT_RUN_ATTR, load_existing_study, stored_experiment
from trainlab.studies.search_space import apply_params
from trainlab.studies.spec import StudySpec, load_study_spec
from trainlab.studies.stale import FAIL_REASON_ATTR, heartbeat
from trainlab.training.launch import Role

MLFLOW_RUN_ATTR = "mlflow_run_id"
TEST_METRICS_ATTR = "trainlab.test_metrics"
VALUES_ATTR = "trainlab.values"  # every metric the objectives and constraints name, of the kept model
EPOCHS_ATTR = "trainlab.epochs"


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
    """How one attempt at a trial ended.

    ``state`` is "complete" (with ``value``), "pruned" or "fail" (with ``reason``); ``fatal`` holds the
    fields of a :class:`MetricNotLogged` error, which stops the whole study.
    """

    state: str
    value: float | list[float] | None = None  # a list for several objectives
    reason: str | None = None
    fatal: dict[str, Any] | None = None


class MetricNotLogged(ConfigError):
    """The study metric never appears among the model's epoch metrics: no trial can be judged."""


class TrialPruning(Callback):
    """Reports the study metric to Optuna after every validation and stops the trial when pruned.

    Also fails the trial when a loss or the metric becomes NaN/inf: Optuna's pruners would otherwise
    prune such a trial as merely "worse", and a diverged trial is a failure with a reason, not a result.
    optuna_integration's PyTorchLightningPruningCallback reports NaN as a value and needs RDBStorage under
    DDP; here rank 0 reports and broadcasts the decision, so any storage works.

    With ``report=False`` (a multi-objective study: Optuna neither takes intermediate values nor prunes
    there) it only fails diverged trials.

    Example::

        trainer = L.Trainer(callbacks=[TrialPruning(trial, "val/acc")])
    """

    def __init__(self, trial, monitor: str, report: bool = True) -> None:
        self.trial = trial
        self.monitor = monitor
        self.report = report

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
        if trainer.is_global_zero and self.trial is not None and self.report:
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):
            import optuna

            raise optuna.TrialPruned(f"at epoch {epoch} with {self.monitor}={float(value):.4g}")


class TrialRole(Role):
    """A study trial's part in its run: the pruning callback, and the run id recorded on the trial.

    In the worker it holds the live trial. In a trial's process group rank 0 re-attaches to the RUNNING
    trial through the study storage (with the study's own pruner deciding); ranks > 0 never touch the
    storage, their pruning callback only follows rank 0's broadcast decision.
    """

    log_name = "trial_process.log"

    def __init__(self, trial, context: TrialContext | None = None, *, metric: str | None = None, report: bool | None = None) -> None:
        self.trial = trial
        self.context = context
        self.metric = metric or context.spec.metric
        self.report = report if report is not None else not context.spec.is_multi_objective

    def to_launch(self) -> dict[str, Any]:
        context = self.context
        if context is None or context.storage_url is None:
            raise ValueError("a multi-process trial needs the study's storage URL in its TrialContext")
        spec = context.spec
        return {
            "storage_url": context.storage_url,
            "study_name": spec.name,
            "trial_number": self.trial.number,
            "metric": spec.metric,
            "report": self.report,
            "pruner": spec.pruner,
            "max_epochs": spec.max_epochs,
        }

    @classmethod
    def from_launch(cls, fields: dict[str, Any]) -> TrialRole:
        from trainlab.studies.quiet import quiet_for_studies
        from trainlab.training.processes import is_rank_zero

        quiet_for_studies()  # a trial's process group is as quiet as its worker
        return cls(_attach(fields) if is_rank_zero() else None, metric=fields["metric"], report=fields.get("report", True))

    def callbacks(self) -> list[Any]:
        from trainlab.training.progress import EpochLines

        # A line per epoch, labelled with the trial, whatever the terminal: workers share it (training/progress.py).
        label = f"trial {self.trial.number}" if self.trial is not None else ""
        return [TrialPruning(self.trial, self.metric, self.report), EpochLines(label=label)]

    def on_run_created(self, run_id: str) -> None:
        self.trial.set_user_attr(MLFLOW_RUN_ATTR, run_id)


def _attach(fields: dict[str, Any]):
    """The RUNNING trial, re-opened through the storage, with the study's own pruner deciding."""
    import optuna

    from trainlab.studies.pruners import build_pruner

    study, storage = load_existing_study(fields["storage_url"], fields["study_name"])
    study.pruner = build_pruner(fields["pruner"], fields["max_epochs"])
    # Optuna has no public "trial by number" for a running trial; its integrations re-attach the same way.
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, fields["trial_number"])
    return optuna.trial.Trial(study, trial_id)


def context_for(
    study,
    tracking_uri: str,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage_url: str | None = None,
    devices_per_trial: int | None = None,
) -> TrialContext:
    """The :class:`TrialContext` of ``study``, rebuilt from what it stores."""
    experiment = stored_experiment(study)
    section = experiment.study or {}
    if n_trials is None and timeout is None and section.get("n_trials") is None and section.get("timeout") is None:
        n_trials = 1  # budget does not matter to a single re-attached trial
    spec = load_study_spec(experiment, n_trials=n_trials, timeout=timeout, name=study.study_name, check_run=False)
    return TrialContext(experiment, spec, tracking_uri, study.user_attrs.get(PARENT_RUN_ATTR), storage_url, devices_per_trial)


def trial_config(trial, context: TrialContext):
    """The resolved run config of ``trial``: its sampled values (sampled now, or the ones it already has)
    applied to the study's run config. Raises ``ConfigError`` when they make an invalid config."""
    from trainlab.config import resolve_run_config
    from trainlab.studies.devices import with_devices_per_trial

    spec = context.spec
    values = spec.space.sample(trial)
    run = with_devices_per_trial(apply_params(context.experiment.run, values), context.devices_per_trial)
    set_dotted(run, "tracking.run_name", f"{spec.name}-trial-{trial.number}")
    # The study's objective is the trial's monitor: checkpoint, pruning and plots follow it (contract.monitored_metric).
    run["monitor"] = {"metric": spec.metric, "mode": "max" if spec.direction == "maximize" else "min"}
    if spec.measures:  # model/params, model/latency_ms, measured when fit ends (training/measurements.py)
        run["measure"] = spec.measures
    # Trials never touch the test set (selecting on it would leak it; the refit is tested) and draw no
    # pictures while they train: the study draws them at its end for the trials that completed.
    run["test"] = False
    if run.get("diagnostics") is not False:
        run["diagnostics"] = {**(run.get("diagnostics") or {}), "pictures": False}
    return resolve_run_config(run)


def run_trial(trial, context: TrialContext, config=None, resume=None) -> float | list[float]:
    """Train one trial through ``launch`` and return its objective: the best epoch value of the metric
    (with several metrics, their values for the kept model: :func:`trial_values`).

    Raises ``optuna.TrialPruned`` when pruned, ``RunEnded`` when the run failed (its reason recorded in
    MLflow), ``ConfigError`` when the sampled values make an invalid config.
    """
    from trainlab.training.launch import launch

    spec = context.spec
    config = config or trial_config(trial, context)
    tags = {"trainlab.kind": "trial", "trainlab.study": spec.name, "trainlab.trial": str(trial.number)}
    result = launch(config, context.tracking_uri, parent_run_id=context.parent_run_id, tags=tags, role=TrialRole(trial, context), resume=resume)
    trial.set_user_attr(TEST_METRICS_ATTR, {k: v for k, v in result.metrics.items() if k.startswith("test/")})
    if not spec.is_multi_objective and not spec.constraints:
        return objective_value(result.history, spec)
    values = trial_values(result.history, spec)
    trial.set_user_attr(VALUES_ATTR, values)
    trial.set_user_attr(EPOCHS_ATTR, len(result.history.get(spec.metric, [])))  # no intermediate values to count
    for constraint in spec.constraints:  # Optuna's samplers and best_trials read these (<= 0: feasible)
        trial.set_constraint(constraint.metric, constraint.violation(values[constraint.metric]))
    if spec.is_multi_objective:
        return [values[metric] for metric in spec.metrics]
    return objective_value(result.history, spec)


def trial_values(history: dict[str, list[tuple[int, float]]], spec: StudySpec) -> dict[str, float]:
    """Every metric the study's objectives and constraints name, for the model the trial keeps."""
    from trainlab.studies.objectives import measured_values

    try:
        values = measured_values(history, spec.objectives, spec.constraints)
    except KeyError as missing:
        metric = missing.args[0]
        key = "study.metrics" if metric in spec.metrics else "study.constraints"
        raise _metric_not_logged(metric, history, key) from None
    for metric, value in values.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"{metric} is {value}")
    return values


def objective_value(history: dict[str, list[tuple[int, float]]], spec: StudySpec) -> float:
    """The best value of the metric over the epochs (the epoch the checkpoint keeps, for the monitor)."""
    points = history.get(spec.metric)
    if not points:
        raise _metric_not_logged(spec.metric, history)
    best = best_by_direction([value for _, value in points], spec.direction)
    if not math.isfinite(best):
        raise FloatingPointError(f"{spec.metric} is {best}")
    return best


def attempt_trial(trial, context: TrialContext, config=None, resume=None) -> TrialOutcome:
    """Train ``trial`` here and say how it ended. A trial's own error never escapes (the study goes on);
    Ctrl-C and SIGTERM do. ``resume`` (a ResumeFrom) continues the trial's run from its checkpoint."""
    import optuna

    from trainlab.training.fit_run import RunEnded

    try:
        return TrialOutcome("complete", value=run_trial(trial, context, config, resume))
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


def execute_trial(study, trial, context: TrialContext, resume=None):
    """Run ``trial`` and tell Optuna how it ended: COMPLETE, PRUNED or FAIL (reason in a user attr).

    A trial whose config needs several processes (``trainer.devices: 2, strategy: ddp``) runs as its own
    process group while this worker keeps its heartbeat and waits. A failing trial never stops the study;
    a :class:`MetricNotLogged` error does (no trial could ever be judged), after its trial is failed.
    Ctrl-C fails the trial and propagates. ``resume`` continues a trial from its checkpoint in its own MLflow
    run: a dead worker's (:func:`trainlab.studies.stale.adopt_a_dead_trial`) or one handed over by a
    requeued SLURM task. Returns the FrozenTrial.
    """
    try:
        with heartbeat(trial):
            try:
                outcome = attempt_trial(trial, context, trial_config(trial, context), resume)
            except ConfigError as exc:
                outcome = TrialOutcome("fail", reason=f"sampled values make an invalid config: {exc.message}")
    except KeyboardInterrupt:
        from trainlab.studies.stale import is_handed_over
        from trainlab.training.processes import interrupt_reason

        if not is_handed_over(study, trial):  # a requeued SLURM task resumes it (trainlab.slurm.array_task)
            _fail(study, trial, interrupt_reason())
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
    return exc.fields()


def _fail(study, trial, reason: str):
    from optuna.trial import TrialState

    trial.set_user_attr(FAIL_REASON_ATTR, mask_text(reason)[:2000])
    return study.tell(trial, state=TrialState.FAIL)


def _fail_if_not_finite(trainer) -> None:
    for name, value in trainer.callback_metrics.items():
        if ("loss" in name.split("/")[-1]) and not math.isfinite(float(value)):
            raise FloatingPointError(f"{name} became {float(value)} at epoch {trainer.current_epoch}")


def _metric_not_logged(metric: str, logged: Any, key: str = "study.metric") -> MetricNotLogged:
    # LearningRateMonitor (lr-*), the optimiser and diagnostics curves are trainlab's own, not the model's metrics.
    names = ", ".join(sorted(name for name in logged if not name.startswith(("lr-", "optim/", "gradients/", "best/")))[:12]) or "none"
    return MetricNotLogged(key, metric, f"a metric the model logs each epoch (logged: {names})")
