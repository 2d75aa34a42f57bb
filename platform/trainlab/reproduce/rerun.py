"""Re-running a recorded run through the one training path, and checking that it matched.

    audit (recorded vs now) ─▶ launch(recorded config.yaml) ─▶ audit again (what the re-run recorded)
                                                             └▶ compare every curve and final metric
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainlab.errors import ConfigError
from trainlab.reproduce.audit import Audit, audit, state_now
from trainlab.reproduce.compare import Comparison, compare_histories
from trainlab.reproduce.recorded import RecordedRun, config_edits, load_recorded
from trainlab.tracking.environment import EXACT
from trainlab.training.resume import MAX_EPOCHS_TAG, RESUMED_TAG

# Default tolerance when only a statistical reproduction can be expected: 2 points of accuracy, 2% of a loss.
STATISTICAL_TOLERANCE = 0.02


@dataclass
class Reproduction:
    """The outcome of ``trainlab reproduce``: the audit before training, and (unless a dry run) the re-run."""

    original: RecordedRun
    before: Audit
    tolerance: float
    rerun: RecordedRun | None = None
    after: Audit | None = None
    comparison: Comparison | None = None
    failure: str | None = None  # the re-run ended FAILED/KILLED: why
    tolerance_given: bool = False  # --tolerance, rather than the default for the expectation

    @property
    def matches(self) -> bool:
        audit_now = self.after or self.before
        return self.comparison is not None and self.failure is None and not audit_now.blocking and self.comparison.matches

    def verdict(self) -> str:
        if self.comparison is None:
            return "audit only (--dry-run)"
        audit_now = self.after or self.before
        if self.matches:
            return f"MATCH: {self.comparison.summary()}{self._one_rerun()}"
        reasons = []
        if audit_now.edited_user_files:
            reasons.append(f"user code differs from the run's: {', '.join(audit_now.edited_user_files)}")
        if self.failure:
            reasons.append(f"re-run ended {self.failure}")
        if audit_now.blocking:
            reasons.append(audit_now.verdict().removeprefix("cannot match: "))
        if not self.comparison.matches:
            reasons.append(self.comparison.summary())
        return "MISMATCH: " + "; ".join(reasons) + self._one_rerun() + self._causes(audit_now)

    def _one_rerun(self) -> str:
        """Said whenever the verdict rests on one re-run and the default statistical tolerance, not a spread."""
        if self.tolerance_given or self.tolerance != STATISTICAL_TOLERANCE:
            return ""
        return f" [one re-run against the default tolerance {STATISTICAL_TOLERANCE:g}, not a spread of seeds: trainlab confirm measures that]"

    def _causes(self, audit_now: Audit) -> str:
        """What the audit found that explains a mismatch, each with what to do; else why none could be named."""
        causes = [] if audit_now.blocking else audit_now.causes()  # blocking ones are named above already
        if causes:
            text = f". Causes found by the audit: {'; '.join(causes)}"
        elif audit_now.blocking or audit_now.edited_user_files or self.failure:
            return ""
        elif audit_now.recorded_label != EXACT:
            why = "; ".join(audit_now.recorded_reasons) or "not recorded as exact"
            text = f". No difference found by the audit; the run was recorded as {audit_now.recorded_label or 'unlabelled'} ({why}), so one re-run may differ by chance (trainlab confirm measures the spread over seeds)"
        else:
            text = ". No difference found by the audit: a source of nondeterminism trainlab does not know of"
        gap = _largest_gap(self.comparison)
        if gap is not None and not audit_now.blocking:
            text += f"; or accept the gap with --tolerance {gap:.2g}"
        return text


def _largest_gap(comparison: Comparison | None) -> float | None:
    """The tolerance that would have accepted every compared value (relative above 1, as ``within`` counts)."""
    import math

    if comparison is None:
        return None
    gaps = []
    for metric in comparison.metrics:
        if math.isfinite(metric.largest_gap) and metric.largest_gap > 0:
            scale = max(1.0, abs(metric.final_a or 0.0))
            gaps.append(metric.largest_gap / scale * 1.01)
    return max(gaps) if gaps else None


def rerun_config(recorded: RecordedRun, *, seed: int | None = None, run_name: str | None = None, workdir: str | None = None):
    """The recorded config.yaml, resolved again, to be trained into the original run's experiment.

    ``trainlab.*``/``mlflow.*`` tags in its tracking section are dropped: they described the original
    (a trial of some study); the caller tags the new run for what it is. A run a resume made train longer
    is re-run to the max_epochs it trained to (tag ``trainlab.max_epochs``).
    """
    from trainlab.config import load_experiment, resolve_run_config
    from trainlab.config.experiment import set_dotted
    from trainlab.training.resume import with_effective_max_epochs

    if recorded.config_path is None:
        raise ConfigError(f"run {recorded.run_id}", expected="a recorded config.yaml artifact")
    try:
        run = load_experiment(recorded.config_path).run
    except ConfigError as exc:
        raise ConfigError(f"run {recorded.run_id} config.yaml: {exc.key}", exc.value, exc.expected, exc.hint) from None
    run = copy.deepcopy(with_effective_max_epochs(run, recorded.tags))
    tags = (run.get("tracking") or {}).get("tags") or {}
    set_dotted(run, "tracking.tags", {k: v for k, v in tags.items() if not k.startswith(("trainlab.", "mlflow."))})
    set_dotted(run, "tracking.experiment", recorded.experiment_name)
    set_dotted(run, "tracking.run_name", run_name or f"{recorded.name} (reproduction)")
    if seed is not None:
        run["seed_everything"] = seed
    try:
        return resolve_run_config(run)
    except ConfigError as exc:  # the recorded config no longer resolves with today's code
        raise ConfigError(f"run {recorded.run_id} config.yaml: {exc.key}", exc.value, exc.expected, exc.hint) from None


def reproduce(
    client,
    tracking_uri: str,
    run_id: str,
    *,
    tolerance: float | None = None,
    dry_run: bool = False,
    workdir: str,
    say: Callable[[str], Any] = print,
    slurm: Any = None,
) -> Reproduction:
    """Audit, re-run and compare run ``run_id``; ``say`` receives the report as it unfolds.

    Tolerance: ``None`` means bit-identical when an exact reproduction is expected, else
    :data:`STATISTICAL_TOLERANCE`. ``slurm`` (SlurmSettings): the re-run is one SLURM job, checked by
    ``sbatch --test-only`` before anything is said or trained.
    """
    from trainlab.class_paths import class_paths_in

    original = load_recorded(client, run_id, workdir=workdir)
    # Said before anything is imported: a run's config names code to run, and the store may not be yours.
    imports = ", ".join(f"{key}: {path}" for key, path in class_paths_in(original.config)) or "none"
    say(f"imports (the config's class paths; reproduce only runs from stores you trust): {imports}")
    try:
        config = rerun_config(original)
    except ConfigError as exc:  # a config that no longer resolves: say first whether the packages moved on
        raise _explained_by_packages(exc, original) from None
    if slurm is not None:
        slurm = _slurm_job(slurm, config, original.environment)
    say(f"reproduce {original.describe()}")
    if MAX_EPOCHS_TAG in original.tags:
        say(f"note: a resume raised trainer.max_epochs to {original.tags[MAX_EPOCHS_TAG]} ({RESUMED_TAG}: {original.tags.get(RESUMED_TAG)}): re-running to that")
    if original.status != "FINISHED":
        say(f"note: the original ended {original.status}; only the epochs it recorded are compared")
    with recorded_threads(original.environment, say), recorded_folder(original, say):
        return _audit_and_rerun(client, tracking_uri, original, config, tolerance, dry_run, workdir, say, slurm)


@contextlib.contextmanager
def recorded_threads(environment: dict[str, Any] | None, say: Callable[[str], Any]):
    """Train with the torch thread count the run had (it splits CPU reductions, so it changes the last bits),
    and say so; a run of several processes sets each rank's threads itself, so it is left alone."""
    import torch

    hardware = (environment or {}).get("hardware") or {}
    recorded, current = hardware.get("torch_threads"), torch.get_num_threads()
    one_process = ((environment or {}).get("distributed") or {}).get("world_size", 1) in (1, None)
    if not isinstance(recorded, int) or recorded < 1 or recorded == current or not one_process:
        yield
        return
    say(f"note: torch threads set to {recorded} as recorded (this process had {current})")
    torch.set_num_threads(recorded)
    try:
        yield
    finally:
        torch.set_num_threads(current)


@contextlib.contextmanager
def recorded_folder(original: RecordedRun, say: Callable[[str], Any]):
    """Re-run from the run's own working directory when a relative path in its data section names a file
    there but nothing here (``path: data/train.csv`` reproduced from another folder); the config is unchanged."""
    import os
    from pathlib import Path

    from trainlab.tracking.run_record import flatten

    there = (original.environment or {}).get("cwd")
    if not there or not Path(there).is_dir() or Path(there).resolve() == Path.cwd().resolve():
        yield
        return
    data = flatten((original.config or {}).get("data") or {}, "data.")
    relative = [key for key, value in data.items() if isinstance(value, str) and value and "://" not in value
                and not os.path.isabs(value) and not os.path.exists(value) and os.path.exists(os.path.join(there, value))]
    if not relative:
        yield
        return
    say(f"note: {', '.join(relative)} relative to the run's working directory: re-running from {there}")
    here = os.getcwd()
    os.chdir(there)
    try:
        yield
    finally:
        os.chdir(here)


def _explained_by_packages(exc: ConfigError, original: RecordedRun) -> ConfigError:
    """``exc`` with the numeric packages that changed since the run, and how to get them back, as its hint."""
    from trainlab.reproduce.audit import package_causes
    from trainlab.tracking.environment import capture_environment

    if not original.environment:
        return exc
    causes = package_causes(original.environment, capture_environment(None)[0])
    if not causes:
        return exc
    hint = f"packages changed since the run, the likely cause: {'; '.join(causes)}"
    return ConfigError(exc.key, exc.value, exc.expected, hint=f"{exc.hint}; {hint}" if exc.hint else hint)


def effective_config(original: RecordedRun) -> dict[str, Any] | None:
    """The config the run trained to the end: config.yaml (kept as first written, see config_edits) with the
    max_epochs a resume raised it to."""
    from trainlab.training.resume import with_effective_max_epochs

    return with_effective_max_epochs(original.config, original.tags) if original.config is not None else None


def _slurm_job(settings, config, environment: dict[str, Any] | None):
    """The re-run's job, accepted by sbatch; a one-process run trains with the torch threads it recorded
    (they split CPU reductions: another count changes the last bits), whatever cores the task has."""
    from dataclasses import replace

    from trainlab.slurm.train_job import checked_job

    recorded = ((environment or {}).get("hardware") or {}).get("torch_threads")
    world = ((environment or {}).get("distributed") or {}).get("world_size") or 1
    if settings.threads is None and world == 1 and isinstance(recorded, int) and recorded >= 1:
        settings = replace(settings, threads=recorded)
    nodes = config.section("trainer").get("num_nodes") or 1
    return checked_job(settings, config, REPRODUCTION_TAGS, devices_if_auto=max(1, int(world) // int(nodes)))


REPRODUCTION_TAGS = {"trainlab.kind": "reproduction"}


def _audit_and_rerun(client, tracking_uri, original, config, tolerance, dry_run, workdir, say, slurm=None) -> Reproduction:
    from trainlab.reproduce.report import audit_table

    now_environment, now_data = state_now(config)
    before = audit(
        effective_config(original),
        original.environment,
        original.data_fingerprint,
        now_environment,
        now_data,
        config_edits=config_edits(original, config.document),
        now_config=config.document,
    )
    chosen = tolerance if tolerance is not None else (0.0 if before.expectation == EXACT else STATISTICAL_TOLERANCE)
    result = Reproduction(original, before, chosen, tolerance_given=tolerance is not None)
    say(audit_table(before).text())
    say(f"verdict: {before.verdict()}")
    if dry_run:
        return result

    new_run_id = _train(config, tracking_uri, original.run_id, result, say, slurm)
    if new_run_id is None:  # a torchrun rank other than 0: rank 0 compares and reports
        return result
    result.rerun = load_recorded(client, new_run_id, required=(), workdir=workdir)
    rerun_environment = result.rerun.environment or now_environment
    result.after = audit(
        effective_config(original),
        original.environment,
        original.data_fingerprint,
        rerun_environment,
        result.rerun.data_fingerprint,
        config_edits=config_edits(original, config.document),
        now_config=result.rerun.config or config.document,
    )
    if tolerance is None and result.after.expectation != before.expectation:
        result.tolerance = 0.0 if result.after.expectation == EXACT else STATISTICAL_TOLERANCE
    result.comparison = compare_histories(original.histories, result.rerun.histories, result.tolerance)
    return result


def _train(config, tracking_uri: str, original_id: str, result: Reproduction, say, slurm=None) -> str | None:
    from trainlab.training import RunEnded, launch

    where = " as one SLURM job" if slurm is not None else ""
    say(f"re-running through fit_run{where} into experiment {config.tracking['experiment']} (tag trainlab.reproduces={original_id}) ...")
    tags = {"trainlab.reproduces": original_id, **REPRODUCTION_TAGS}
    try:
        run_id = launch(config, tracking_uri, tags=tags, slurm=slurm).run_id
    except RunEnded as ended:
        result.failure = f"{ended.result.status}: {ended.result.reason}"
        run_id = ended.result.run_id
    if run_id:
        say(f"re-run: run {run_id}")
    return run_id


def log_reproduction(client, result: Reproduction, text: str, html: str, csv: str) -> None:
    """Verdict as tags, report and comparison table as artifacts, on the new run."""
    from mlflow.entities import RunTag
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    assert result.rerun is not None and result.comparison is not None
    audit_now = result.after or result.before
    divergence = result.comparison.first_divergence()
    tags = {
        "trainlab.reproduction.verdict": "match" if result.matches else "mismatch",
        "trainlab.reproduction.expected": audit_now.expectation,
        "trainlab.reproduction.tolerance": f"{result.tolerance:g}",
        "trainlab.reproduction.summary": result.verdict()[:MAX_TAG_VAL_LENGTH],
    }
    if divergence:
        tags["trainlab.reproduction.first_divergence"] = f"epoch {divergence[0]}: {', '.join(divergence[1])}"[:MAX_TAG_VAL_LENGTH]
    run_id = result.rerun.run_id
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_text(run_id, text, "reproduction/report.txt")
    client.log_text(run_id, html, "reproduction/report.html")
    client.log_text(run_id, csv, "reproduction/comparison.csv")
