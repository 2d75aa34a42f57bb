"""Re-run a tracked run from what it recorded and check that it matched.

1. audit: what was recorded (code, packages, data fingerprints, hardware, world size, determinism)
   against what is here now, and the verdict: exact reproduction expected, or only statistical;
2. re-run the recorded config.yaml through the one training path, into a new run of the same experiment
   tagged trainlab.reproduces=RUN_ID;
3. compare every per-epoch curve and final metric; name the first epoch that diverges.

Exit 0: matched (bit-identical for an exact run unless --tolerance is given; within tolerance otherwise).
Exit 1: did not match (or, with --dry-run, config/data differ). Exit 2: cannot reproduce (unknown run, missing artifact).
RUN_ID may also be study:NAME, the best finished trial of study NAME.
--launcher slurm re-runs it as one SLURM job (as ``trainlab train --launcher slurm``), its settings given as
launcher.slurm.KEY=VALUE overrides: trainlab reproduce RUN_ID --launcher slurm launcher.slurm.partition=cpu
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run id to reproduce, or study:NAME for a study's best trial")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest accepted difference per value, relative above 1 (default: 0, bit-identical, for an exact run; 0.02 otherwise)",
    )
    parser.add_argument("overrides", nargs="*", metavar="launcher.slurm.KEY=VALUE",
                        help="with --launcher slurm: the job's settings, e.g. launcher.slurm.partition=cpu (the run trains its recorded config)")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="slurm: the re-run is one SLURM job, trainer.num_nodes nodes x trainer.devices tasks, as trainlab train --launcher slurm")
    parser.add_argument("--dry-run", action="store_true", help="audit only: report what differs, do not re-run")
    parser.add_argument("--pick", default=None, metavar="RULE",
                        help='with study:NAME, which Pareto trial: e.g. "max val/acc where model/params <= 20000" (needed with several metrics)')
    add_tracking_uri(parser)


def run(args: argparse.Namespace) -> int:
    import math
    import tempfile

    from trainlab.errors import ConfigError
    from trainlab.reproduce.recorded import open_store
    from trainlab.reproduce.report import audit_table, comparison_table, curves_figure, figure_png, html_page
    from trainlab.reproduce.rerun import log_reproduction, reproduce
    from trainlab.reproduce.study_runs import resolve_run_reference
    from trainlab.tracking.store import resolve_tracking_uri
    from trainlab.training.processes import is_rank_zero

    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise ConfigError("--tolerance", args.tolerance, "a number >= 0")
    slurm = _slurm_settings(args)
    uri = resolve_tracking_uri(args.tracking_uri)
    client = open_store(uri)
    run_id = resolve_run_reference(client, args.run_id, args.pick)
    lines: list[str] = []

    rank_zero = is_rank_zero()

    def say(text: str) -> None:
        if rank_zero:  # under torchrun every rank runs this command: only rank 0 speaks
            print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="trainlab-reproduce-") as workdir:
        result = reproduce(client, uri, run_id, tolerance=args.tolerance, dry_run=args.dry_run, workdir=workdir, say=say, slurm=slurm)
        if args.dry_run:
            return 1 if result.before.blocking else 0
        if result.rerun is None:
            return 0  # a torchrun rank other than 0
        tables = []
        if result.after is not None and _rows(result.after) != _rows(result.before):
            tables.append(audit_table(result.after, "audit after the re-run: original vs what the re-run recorded", ("original", "re-run")))
            say(tables[-1].text())
            say(f"verdict: {result.after.verdict()}")
        comparison = comparison_table(result.comparison)
        print(comparison_table(result.comparison, brief=True).text())
        lines.append(comparison.text())  # the report keeps every metric
        say(result.verdict())
        narrative = [
            f"original: {result.original.describe()}",
            f"re-run: {result.rerun.describe()}",
            f"before the re-run: {result.before.verdict()}",
            *([f"after the re-run: {result.after.verdict()}"] if tables else []),
            result.verdict(),
        ]
        figure = figure_png(curves_figure(result.original.histories, result.rerun.histories, ("original", "re-run")))
        page = html_page(f"reproduction of {result.original.run_id}", narrative, [audit_table(result.before), *tables, comparison], [figure])
        log_reproduction(client, result, "\n".join(lines) + "\n", page, comparison.csv())
    print(f"logged on run {result.rerun.run_id}: tag trainlab.reproduction.verdict, reproduction/report.txt, report.html, comparison.csv")
    return 0 if result.matches else 1


def _slurm_settings(args: argparse.Namespace):
    """``--launcher slurm``'s settings from the launcher.slurm.KEY=VALUE overrides (nothing else may be
    overridden: a reproduction trains the recorded config); None on this machine."""
    from trainlab.config.experiment import apply_overrides
    from trainlab.errors import ConfigError

    for item in args.overrides:
        if not item.startswith("launcher.slurm."):
            raise ConfigError(item, expected="launcher.slurm.KEY=VALUE with --launcher slurm (a reproduction trains the config its run recorded)")
    if args.launcher != "slurm":
        if args.overrides:
            raise ConfigError(args.overrides[0], expected="--launcher slurm as well (launcher.slurm settings are the SLURM job's)")
        return None
    from trainlab.slurm import require_sbatch, slurm_settings

    require_sbatch()
    return slurm_settings(apply_overrides({}, args.overrides).get("launcher"))


def _rows(audit) -> list[tuple[str, str]]:
    # Aspects, not values: a tree edited during training changes the digest, not what the audit says.
    return [(d.aspect, d.effect) for d in audit.differences]
