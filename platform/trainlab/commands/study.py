"""Run, or resume, the Optuna study an experiment file describes (its study and search_space sections).

Each trial is a tracked run nested under the study's parent run in MLflow. Running the same command
again continues the study up to its total n_trials; trials of a killed process are failed and replaced.
  trainlab study studies/digits_mlp.yaml
  trainlab study studies/digits_mlp.yaml --n-trials 40 --jobs 2
  trainlab study studies/digits_mlp.yaml trainer.max_epochs=5 --storage postgresql://me@db/optuna
  trainlab study studies/fashion_cnn.yaml --jobs 2 --devices-per-trial 4    (8 GPUs: two 4-GPU DDP trials at a time)
  trainlab study studies/digits_mlp.yaml --refit-best --register digits-mlp  (prints models:/digits-mlp/1)
  trainlab study studies/digits_mlp.yaml --launcher slurm --jobs 8 --wait launcher.slurm.partition=cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any


PICTURED_TRIALS = 3  # the best trials whose pictures are drawn at the study's end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("file", help="experiment file (YAML) with study and search_space sections")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.max_epochs=5 study.n_trials=10")
    parser.add_argument("--n-trials", type=int, default=None, help="total trials to reach (complete + pruned; failed ones are replaced)")
    parser.add_argument("--timeout", default=None, help="time budget for this invocation: seconds, or 90s, 10m, 2h")
    parser.add_argument("--jobs", type=int, default=None,
                        help="parallel worker processes sharing the study storage (default: study.jobs, else 1)")
    parser.add_argument("--devices-per-trial", type=int, default=None, metavar="K",
                        help="devices each trial trains on (trainer.devices=K; DDP when K > 1); each worker gets K GPUs "
                        "of its own via CUDA_VISIBLE_DEVICES; on CPU, K processes per trial")
    parser.add_argument("--storage", default=None, help="Optuna storage: an RDB URL (postgresql://...) or a journal file path "
                        "(default: optuna_journal.log next to mlflow.db)")
    parser.add_argument("--study-name", default=None, help="study name (default: study.name, else the tracking experiment)")
    parser.add_argument("--refit-best", action="store_true", help="afterwards, train the best config once more on train+val and log the model")
    parser.add_argument("--pick", default=None, metavar="RULE",
                        help='with --refit-best: which Pareto trial, e.g. "max val/acc where model/params <= 20000" (needed with several metrics)')
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="register the refit model in MLflow's Model Registry as the next version of NAME "
                        "(implies --refit-best; default: not registered)")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="where the --jobs workers run: local processes (default), or one SLURM job array (submitit; "
                        "settings from the file's launcher.slurm section)")
    parser.add_argument("--wait", action="store_true", help="with --launcher slurm: follow the job array and exit with the study's result")
    add_tracking_uri(parser)


@dataclass
class StudyPlan:
    """What this invocation will run, checked before anything is created."""

    experiment: Any  # the experiment file as written (stored with the study)
    spec: Any  # its StudySpec, validated as the trials will train
    gpu_slots: list[str] | None
    tracking_uri: str
    storage_url: str
    pick: Any = None  # the --pick rule (trainlab.studies.pareto.PickRule), checked against the study's metrics
    slurm: Any = None  # with --launcher slurm: its trainlab.slurm.SlurmSettings, accepted by sbatch --test-only


def run(args: argparse.Namespace) -> int:
    # Before anything heavy: importing torch, Lightning and MLflow and checking the file take ~5 s, and a
    # new MLflow store ~10 s more (MLflow builds its tables through every one of its schema migrations).
    print(f"study {args.file}: starting (loading torch, Lightning and MLflow; checking the file and the stores)", flush=True)
    from trainlab.studies.quiet import quiet_for_studies

    quiet_for_studies()
    plan = _plan(args)
    from trainlab.tracking.reaper import claim_run
    from trainlab.tracking.store import tracking_client

    study, storage, parent_run_id = _open_or_resume(plan)
    if plan.slurm is not None:
        return _run_on_slurm(plan, args, study, storage, parent_run_id)
    # This invocation owns the parent run while it runs: killed with it, the parent is reaped like any run.
    ownership = claim_run(tracking_client(plan.tracking_uri), parent_run_id)
    _announce(plan, args, parent_run_id)
    return _run_and_report(plan, args, study, storage, parent_run_id, ownership)


def _plan(args: argparse.Namespace) -> StudyPlan:
    """Validate the arguments and the experiment file; nothing is created yet (bad input: ConfigError)."""
    from dataclasses import replace

    from trainlab.config import load_experiment, resolve_run_config
    from trainlab.config.import_paths import make_importable
    from trainlab.errors import ConfigError
    from trainlab.studies.devices import device_slots, trial_gpu_count, visible_gpus, with_devices_per_trial
    from trainlab.studies.spec import load_study_spec
    from trainlab.studies.storage import check_study_stores, resolve_storage_url
    from trainlab.tracking.store import resolve_tracking_uri

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("--jobs", args.jobs, "an integer >= 1")
    if args.devices_per_trial is not None and args.devices_per_trial < 1:
        raise ConfigError("--devices-per-trial", args.devices_per_trial, "an integer >= 1")
    on_slurm = args.launcher == "slurm"
    if args.wait and not on_slurm:
        raise ConfigError("--wait", expected="--launcher slurm as well (a local study always waits for its workers)")
    if on_slurm and (args.refit_best or args.register) and not args.wait:
        raise ConfigError("--refit-best", expected="--wait as well with --launcher slurm (the refit trains once the array is done)")
    if on_slurm:
        from trainlab.slurm import require_sbatch

        require_sbatch()
    if args.register is not None:
        from trainlab.studies.refit import check_model_name

        check_model_name(args.register)
        args.refit_best = True  # a model to register is the refit's
    make_importable(Path(args.file).parent)  # the experiment file's own folder, for this process and its workers
    experiment = load_experiment(args.file, args.overrides)
    for note in experiment.notes:
        print(f"note: {note}", file=sys.stderr)
    # Validated as the trials will train; stored as written (devices are this invocation's resources).
    as_trained = replace(experiment, run=with_devices_per_trial(experiment.run, args.devices_per_trial))
    spec = load_study_spec(as_trained, n_trials=args.n_trials, timeout=args.timeout, name=args.study_name)
    pick = _pick_rule(args, spec)
    trial_trainer = resolve_run_config(as_trained.run).section("trainer")
    gpus_per_trial = trial_gpu_count(trial_trainer, args.devices_per_trial)
    if args.jobs is None:  # study.jobs; "auto" sizes local workers to this machine (an array's tasks: one each)
        from trainlab.studies.worker import auto_jobs

        args.jobs = spec.jobs if spec.jobs != "auto" else 1 if on_slurm else auto_jobs(gpus_per_trial, visible_gpus())
    slurm = None
    if on_slurm:  # GPUs are the array tasks' (SLURM gives each its own), not this machine's
        from trainlab.slurm import slurm_settings
        from trainlab.slurm.submit import check_with_sbatch

        slurm = slurm_settings(experiment.launcher, args.devices_per_trial if gpus_per_trial else None)
        if not gpus_per_trial and args.devices_per_trial and slurm.cpus_per_task is None:
            slurm = replace(slurm, cpus_per_task=args.devices_per_trial)  # a K-process CPU trial: K cores per task
        gpu_slots = None
        check_with_sbatch(slurm, _slurm_job_name(spec.name), args.jobs)  # sbatch's own verdict, before anything exists
        if args.refit_best:  # the refit's job too, shaped like a trial's
            from trainlab.slurm.train_job import checked_job
            from trainlab.studies.refit import REFIT_TAGS

            checked_job(slurm, resolve_run_config(as_trained.run), REFIT_TAGS, devices_if_auto=1)
    else:
        gpu_slots = device_slots(args.jobs, gpus_per_trial, visible_gpus()) if gpus_per_trial != 0 else None
    uri = resolve_tracking_uri(args.tracking_uri)
    storage_url = resolve_storage_url(args.storage, uri)
    check_study_stores(uri, storage_url)  # both, before either is written to
    return StudyPlan(experiment, spec, gpu_slots, uri, storage_url, pick, slurm)


def _pick_rule(args: argparse.Namespace, spec):
    """``--pick`` parsed now (bad rule: one line, nothing created); several metrics and --refit-best need one."""
    from trainlab.errors import ConfigError
    from trainlab.studies.pareto import parse_pick, pick_metrics, require_pick

    if args.pick is not None and not args.refit_best:
        raise ConfigError("--pick", args.pick, "--refit-best as well (the rule chooses the trial to refit)")
    pick = parse_pick(args.pick, pick_metrics(spec)) if args.pick is not None else None
    if args.refit_best:
        require_pick(spec, pick, "--refit-best")
    return pick


def _open_or_resume(plan: StudyPlan):
    """``(study, storage, parent_run_id)``: the study and its parent run, created or found again."""
    from trainlab.studies.loading import open_study
    from trainlab.studies.parent_run import ensure_parent_run
    from trainlab.studies.storage import ClaimLock

    # Workers on several machines may start a brand-new study at the same instant: one creates the study
    # and its parent run, the others find both.
    with ClaimLock(plan.storage_url, plan.spec.name).held():
        study, storage = open_study(plan.storage_url, plan.spec, plan.experiment)
        parent_run_id = ensure_parent_run(study, plan.spec, plan.experiment, plan.tracking_uri, plan.storage_url)
    return study, storage, parent_run_id


def _announce(plan: StudyPlan, args: argparse.Namespace, parent_run_id: str) -> None:
    from trainlab.secrets import mask_uri

    spec = plan.spec
    budget = f"{spec.n_trials} trials" if spec.n_trials else "no trial limit"
    if spec.timeout:
        budget += f", at most {spec.timeout:.0f} s"
    workers = f"{args.jobs} worker(s)"
    if args.devices_per_trial:
        workers += f", {args.devices_per_trial} device(s) per trial"
    if plan.gpu_slots:
        workers += f" on GPUs {' | '.join(plan.gpu_slots)}"
    from trainlab.studies.report import objectives_text

    goal = f"{spec.direction} {spec.metric}" if not spec.is_multi_objective and not spec.constraints else objectives_text(spec).replace("`", "")
    print(f"study {spec.name}: {goal}; {budget}; sampler {spec.sampler['type']}, pruner {spec.pruner['type']}; {workers}")
    print(f"storage: {mask_uri(plan.storage_url)}\ntracking: {mask_uri(plan.tracking_uri)}  (parent run {parent_run_id})", flush=True)


def _run_and_report(plan: StudyPlan, args: argparse.Namespace, study, storage, parent_run_id: str, ownership) -> int:
    """Run the workers, then report on the parent run (ended unless trials still run elsewhere) and refit."""
    from trainlab.errors import ConfigError
    from trainlab.studies.parent_run import end_parent_run
    from trainlab.studies.report import write_study_report
    from trainlab.studies.stale import reap_dead_trials
    from trainlab.studies.storage import ClaimLock
    from trainlab.studies.worker import WorkerSettings, run_workers
    from trainlab.tracking.reaper import release_run
    from trainlab.tracking.store import tracking_client

    spec, uri = plan.spec, plan.tracking_uri
    settings = WorkerSettings(
        storage_url=plan.storage_url,
        study_name=spec.name,
        tracking_uri=uri,
        n_trials=spec.n_trials,
        timeout=spec.timeout,
        deadline=time.time() + spec.timeout if spec.timeout else None,
        jobs=args.jobs,
        devices_per_trial=args.devices_per_trial,
    )
    status, reason, code = "FINISHED", None, 0
    drawings = None
    try:
        codes = run_workers(settings, args.jobs, plan.gpu_slots)
        # A worker killed by a signal (kill -9, the OOM killer) lost its trial, which the others reaped and
        # replaced; the study fails only for workers that ended with an error of their own.
        for killed in (c for c in codes if c < 0):
            print(f"trainlab: study {spec.name}: a worker was killed by signal {-killed}; its trial was failed and replaced", file=sys.stderr)
        errors = [c for c in codes if c > 0]
        if errors:
            code = 2 if 2 in errors else 1
            status, reason = "FAILED", f"worker exit codes {codes}"
    except KeyboardInterrupt:
        from trainlab.training.processes import interrupt_reason

        status, reason = "KILLED", interrupt_reason()
        raise
    except BaseException as exc:
        status, reason = "FAILED", exc.message if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if status == "FINISHED":  # the study's plots and the best trials' pictures are drawn beside the report
            drawings = _start_drawings(study, spec, uri, parent_run_id)
        # Another invocation of this study (another terminal or machine) may end at the same moment: one at a
        # time reports and ends the parent run (two writing the same new MLflow tag at once fail the second);
        # the later one finds the report written and rewrites only what changed.
        with ClaimLock(plan.storage_url, spec.name).held():
            # Our workers are gone now: anything of theirs still RUNNING is failed, its run ended.
            reap_dead_trials(study, storage, uri)
            summary = write_study_report(study, spec, uri, parent_run_id, plots=drawings is None)
            elsewhere = _trials_running_elsewhere(study)
            if elsewhere:
                # Workers on other machines share this parent run: the last one to finish ends it.
                release_run(tracking_client(uri), parent_run_id, ownership)
                print(f"study {spec.name}: {elsewhere} trial(s) still run on other workers; the parent run stays RUNNING until they end", file=sys.stderr)
            else:
                ownership.stop()
                end_parent_run(uri, parent_run_id, status, reason)
    return _print_outcome(plan, args, study, summary, code, parent_run_id, drawings)


def _print_outcome(plan: StudyPlan, args: argparse.Namespace, study, summary, code: int, parent_run_id: str, drawings=None) -> int:
    """The study's counts and best trial (or Pareto front), its test, the best trials' pictures, the refit; the exit code."""
    from trainlab.secrets import mask_uri
    from trainlab.studies.best_test import evaluate_best_trial_on_test
    from trainlab.studies.storage import ClaimLock

    spec, uri = plan.spec, plan.tracking_uri
    print(
        f"study {spec.name}: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed"
        f" ({summary.epochs} epochs trained)" + (f"; {summary.lost} lost to dead workers" if summary.lost else "")
    )
    if summary.pareto_numbers is not None:
        if not summary.pareto_numbers:
            print("no trial completed" if not summary.complete else "no complete trial meets the constraints", file=sys.stderr)
            return code or 1
        _print_pareto(study, spec)
    elif summary.best_number is None:
        print("no trial completed" if not summary.complete else "no complete trial meets the constraints", file=sys.stderr)
        return code or 1
    else:
        print(f"best: trial {summary.best_number}  {spec.metric}={summary.best_value:.4f}  run {summary.best_run_id}")
        print(f"best params: {summary.best_params}")
    # Trials never saw the test set; the best one is tested once, now (an invocation ending beside this one waits, then reads the result).
    with ClaimLock(plan.storage_url, spec.name).held():
        tested = evaluate_best_trial_on_test(study, uri)
    if tested:
        number, metrics = tested
        print(f"best trial {number} tested: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    if drawings is None:
        _draw_best_trials_pictures(study, spec, uri)
    for drawing in drawings or ():
        drawing.wait()
    if args.refit_best:
        from trainlab.studies.refit import model_uri, refit_best, register_model

        refit = refit_best(study, spec, uri, parent_run_id, plan.pick, slurm=plan.slurm)
        print(f"refit: run {refit.run_id} {refit.status}  " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(refit.metrics.items())))
        print(f"refit model: {model_uri(refit.run_id)}  (mlflow.pytorch.load_model)")
        if args.register:
            registered = register_model(uri, refit.run_id, args.register, {"trainlab.study": spec.name, "trainlab.refit_run": refit.run_id})
            print(f"registered model: {registered}  (mlflow.pytorch.load_model)")
    print(f"browse: trainlab ui --tracking-uri {mask_uri(uri)} --storage {mask_uri(plan.storage_url)}")
    return code


def _slurm_job_name(study_name: str) -> str:
    return f"trainlab-{study_name}"


def _run_on_slurm(plan: StudyPlan, args: argparse.Namespace, study, storage, parent_run_id: str) -> int:
    """Submit the workers as one job array; with --wait, follow it and report as a local study does.

    The parent run has no owner here (this command may exit at once): the array's last task ends it.
    """
    from trainlab.slurm import submit_workers
    from trainlab.slurm.array_task import StudyWorkerTask, close_study_when_done
    from trainlab.slurm.follow import follow_array, task_exit_codes
    from trainlab.slurm.submit import unshared_store_warning
    from trainlab.studies.report import write_study_report
    from trainlab.studies.storage import ClaimLock
    from trainlab.studies.worker import WorkerSettings

    spec = plan.spec
    warning = unshared_store_warning(plan.storage_url, plan.tracking_uri)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    _announce(plan, args, parent_run_id)
    settings = WorkerSettings(
        storage_url=plan.storage_url,
        study_name=spec.name,
        tracking_uri=plan.tracking_uri,
        n_trials=spec.n_trials,
        timeout=spec.timeout,
        deadline=time.time() + spec.timeout if spec.timeout else None,
        jobs=args.jobs,
        devices_per_trial=args.devices_per_trial,
    )
    array = submit_workers(plan.slurm, _slurm_job_name(spec.name), args.jobs, StudyWorkerTask(), settings, parent_run_id)
    kind = "job array" if array.tasks > 1 else "job"
    print(f"slurm: submitted {kind} {array.job_id} ({array.tasks} task(s), one study worker each)")
    print(f"follow: squeue -j {array.job_id}   (sacct -j {array.job_id} once it ran, where accounting is on); output: {array.log_hint()}", flush=True)
    if not args.wait:
        print(f"the array's last task ends the parent run {parent_run_id}; cancel with: scancel {array.job_id}")
        return 0
    follow_array(array.job_id, study, spec.metric, spec.n_trials)
    codes = task_exit_codes(array.jobs)
    close_study_when_done(settings, parent_run_id)  # tasks that were all cancelled could not close it themselves
    stopped = sum(c in (None, 130) for c in codes)  # SIGTERM (130) or gone without a word (SIGKILL, node lost)
    if stopped:
        print(f"trainlab: study {spec.name}: {stopped} array task(s) stopped early (scancel, time limit, node lost); their trials were failed and replaced", file=sys.stderr)
    errors = [c for c in codes if c not in (None, 0, 130)]
    code = (2 if 2 in errors else 1) if errors else 0
    with ClaimLock(plan.storage_url, spec.name).held():  # as close_study_when_done and a local study's end
        summary = write_study_report(study, spec, plan.tracking_uri, parent_run_id)
    return _print_outcome(plan, args, study, summary, code, parent_run_id)


def _print_pareto(study, spec) -> None:
    from trainlab.studies.report import pareto_rows

    header, rows = pareto_rows(study, spec)
    shown = len(spec.metrics) + 1
    print(f"Pareto front: {len(rows)} trial(s) (pareto.csv on the parent run)")
    print("  " + "  ".join(f"{name:>14}" for name in header[:shown]) + "  run")
    for row in rows:
        print("  " + "  ".join(f"{v:>14.6g}" if isinstance(v, float) else f"{v!s:>14}" for v in row[:shown]) + f"  {row[-1]}")


def _trials_running_elsewhere(study) -> int:
    """RUNNING trials once this invocation's workers are gone and dead workers' trials are reaped: they
    belong to live workers of other invocations (other machines, other terminals)."""
    from optuna.trial import TrialState

    from trainlab.studies.stale import WORKER_ATTR, worker_identity

    me = worker_identity()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sum((t.user_attrs.get(WORKER_ATTR) or {}).get("pid") != me["pid"] or (t.user_attrs.get(WORKER_ATTR) or {}).get("host") != me["host"] for t in running)


def _start_drawings(study, spec, uri: str, parent_run_id: str) -> list | None:
    """The study's plots and the best trials' pictures, each in a forked process (``wait`` for them): with the
    report written meanwhile, the three take the study's end ~2.5 s of matplotlib instead of ~4.5 s. None
    where this system does not fork: then the report draws the plots, and the pictures come after it."""
    from trainlab.fork_safety import can_fork, start_forked
    from trainlab.studies.report import log_study_plots

    if not can_fork():
        return None
    return [
        start_forked(log_study_plots, study, spec, uri, parent_run_id, name="trainlab-study-plots"),
        start_forked(_draw_best_trials_pictures, study, spec, uri, name="trainlab-pictures"),
    ]


def _draw_best_trials_pictures(study, spec, uri: str, count: int = PICTURED_TRIALS) -> None:
    """Trials train without matplotlib; the learning curves and gradient-flow pictures of the best
    ``count`` completed trials (the Pareto front's first, with several metrics) are drawn now, from what
    they recorded. Every other trial keeps its curves and verdict tags; a picture costs about a second."""
    from optuna.trial import TrialState

    from trainlab.diagnostics.recorded import draw_recorded_pictures
    from trainlab.studies.trial import MLFLOW_RUN_ATTR
    from trainlab.tracking.store import tracking_client

    if len(study.directions) > 1:
        from trainlab.studies.pareto import pareto_trials

        best = pareto_trials(study)
    else:
        sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
        best = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (sign * t.value, t.number))
    client = tracking_client(uri)
    for trial in best[:count]:
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id:
            draw_recorded_pictures(client, run_id, metrics=("loss", spec.metric.split("/")[-1]))
