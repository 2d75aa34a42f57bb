"""Train, validate and test one run described by an experiment file, tracked in MLflow.

Overrides follow the file: dotted keys with YAML values, e.g.
  trainlab train studies/digits_mlp.yaml trainer.max_epochs=3 model.init_args.dropout=0.2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("file", nargs="?", help="experiment file (YAML); a logged config.yaml works too")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.max_epochs=3")
    parser.add_argument(
        "--resume", metavar="RUN_ID",
        help="continue an unfinished run (killed, failed, preempted) from its last checkpoint, in the same MLflow run; no FILE",
    )
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="slurm: one SLURM job, trainer.num_nodes nodes x trainer.devices tasks (srun; Lightning's SLURM "
                        "environment), settings from the file's launcher.slurm section; waits for the run")
    add_tracking_uri(parser)


def run(args: argparse.Namespace) -> int:
    from trainlab.config import load_experiment, resolve_run_config
    from trainlab.config.import_paths import make_importable
    from trainlab.tracking.store import check_tracking_store, resolve_tracking_uri
    from trainlab.errors import ConfigError
    from trainlab.training import RunEnded, launch

    uri = resolve_tracking_uri(args.tracking_uri)
    slurm = None
    if args.resume:
        if args.launcher == "slurm":
            raise ConfigError("--launcher", "slurm", "no --resume (resume a run where it trained, or re-run its config on SLURM)")
        config, resume = _resumed(args, uri)
    else:
        if not args.file:
            raise ConfigError("FILE", expected="an experiment file (YAML), or --resume RUN_ID")
        make_importable(Path(args.file).parent)  # the experiment file's own folder, as the working directory
        experiment = load_experiment(args.file, args.overrides)
        for note in experiment.notes:
            print(f"note: {note}", file=sys.stderr)
        config, resume = resolve_run_config(experiment.run), None
        slurm = _slurm_job(args, experiment, config) if args.launcher == "slurm" else None
        check_tracking_store(uri, create=True)
    try:
        # One process: trains here. Several: a process group of its own, so that Lightning re-executes the
        # group's member, not this command. Under torchrun every rank trains here. --launcher slurm: one job.
        result = launch(config, uri, resume=resume, slurm=slurm)
    except RunEnded as ended:
        who = f"run {ended.result.run_id}" if ended.result.run_id else "the SLURM job" if slurm else "a non-zero rank of the run"
        print(f"trainlab: {who} {ended.result.status}: {ended.result.reason}", file=sys.stderr)
        if getattr(args, "debug", False):
            raise
        return 1
    if result.run_id is None:
        return 0  # a torchrun rank other than 0: rank 0 reports
    summary = "  ".join(f"{key}={value:.4f}" for key, value in sorted(result.metrics.items()))
    print(f"run {result.run_id} {result.status}  {summary}")
    if result.test_skipped:
        print(f"test skipped: {result.test_skipped} (tag trainlab.test)")
    from trainlab.secrets import mask_uri, without_credentials

    browse = without_credentials(uri) if uri.startswith(("http://", "https://")) else f"trainlab ui --tracking-uri {mask_uri(uri)}"
    print(f"tracking: {mask_uri(uri)}  (browse: {browse})")
    return 0


def _slurm_job(args: argparse.Namespace, experiment, config):
    """The job's SlurmSettings, accepted by ``sbatch --test-only``; bad input before anything is recorded."""
    from trainlab.slurm import slurm_settings
    from trainlab.slurm.train_job import checked_job

    return checked_job(slurm_settings(experiment.launcher), config)


def _resumed(args: argparse.Namespace, uri: str):
    """The recorded config of the run to resume and where to resume it from; bad input before anything changes.

    The one change allowed is ``trainer.max_epochs=N`` to train longer (recorded: see ``MAX_EPOCHS_TAG``)."""
    import dataclasses

    from trainlab.config import resolve_run_config
    from trainlab.errors import ConfigError
    from trainlab.reproduce.recorded import recorded_config
    from trainlab.tracking.store import check_tracking_store, tracking_client
    from trainlab.training.resume import resume_point, with_effective_max_epochs

    wanted = _max_epochs_override(args)
    check_tracking_store(uri, create=False)
    resume = resume_point(uri, args.resume)
    if wanted is not None and wanted <= resume.epoch:
        raise ConfigError("trainer.max_epochs", wanted, f"more than the {resume.epoch} epochs run {args.resume} has done, to train longer")
    client = tracking_client(uri)
    document = with_effective_max_epochs(recorded_config(client, args.resume), client.get_run(args.resume).data.tags)
    before = (document.get("trainer") or {}).get("max_epochs")
    if wanted is not None and wanted != before:
        document = {**document, "trainer": {**(document.get("trainer") or {}), "max_epochs": wanted}}
        resume = dataclasses.replace(resume, max_epochs=wanted, max_epochs_before=before)
    config = resolve_run_config(document)
    longer = f", max_epochs {before} → {wanted}" if resume.max_epochs else ""
    print(f"resuming run {args.resume} at epoch {resume.epoch}{longer} from {resume.checkpoint}", file=sys.stderr)
    return config, resume


def _max_epochs_override(args: argparse.Namespace) -> int | None:
    """N from ``--resume RUN_ID trainer.max_epochs=N``, the one override a resume takes; None without one."""
    import yaml

    from trainlab.errors import ConfigError

    items = ([args.file] if args.file else []) + list(args.overrides)
    if not items:
        return None
    key, _, text = items[0].partition("=")
    if len(items) > 1 or key != "trainer.max_epochs":
        raise ConfigError("--resume", args.resume, "no FILE and no override but trainer.max_epochs=N: a resumed run trains the config it recorded")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError("trainer.max_epochs", text, "a whole number of epochs to train the resumed run to")
    return value
