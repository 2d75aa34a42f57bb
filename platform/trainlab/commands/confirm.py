"""Re-run a study's top trials over several seeds: does the winner stay the winner?

Takes the top-k finished trials by the study metric, re-runs each trial's recorded config with N fresh
seeds (child runs of the study's parent run, tagged trainlab.kind=confirmation), and reports the mean and
95% t-interval per config and whether the study's ranking holds. The table (CSV) and a plot are logged
on the study's parent run. The study's own run of each config is not counted: it was selected for being good.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("study", metavar="STUDY", help="the study name (tag trainlab.study of its parent run)")
    parser.add_argument("--top-k", type=int, default=3, help="how many of the best trials to confirm (default 3)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per config, at least 2 (default 5)")
    parser.add_argument("--experiment", "-e", default=None, help="the study's MLflow experiment (default: search all)")
    parser.add_argument("--pick", default=None, metavar="RULE",
                        help='rank the Pareto trials by a rule, e.g. "max val/acc where model/params <= 20000" (needed with several metrics)')
    add_tracking_uri(parser)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from trainlab.errors import ConfigError
    from trainlab.reproduce.confirmation import ConfigConfirmation, check_ranking, confirmation_figure, confirmation_table
    from trainlab.reproduce.recorded import CONFIG, load_recorded, open_store
    from trainlab.reproduce.study_runs import find_study, picked
    from trainlab.tracking.store import resolve_tracking_uri

    if args.top_k < 1:
        raise ConfigError("--top-k", args.top_k, "an integer >= 1")
    if args.seeds < 2:
        raise ConfigError("--seeds", args.seeds, "an integer >= 2 (an interval needs two values)")
    uri = resolve_tracking_uri(args.tracking_uri)
    client = open_store(uri)
    study = find_study(client, args.study, args.experiment)
    study = picked(client, study, args.pick, "confirm") or study
    if not study.trials:
        raise ConfigError("STUDY", args.study, f"a study with finished trials that logged {study.metric}")
    top = study.trials[: args.top_k]
    with tempfile.TemporaryDirectory(prefix="trainlab-confirm-") as workdir:
        recorded = [load_recorded(client, trial.info.run_id, required=(CONFIG,), workdir=workdir) for trial in top]
        used = {r.config.get("seed_everything") for r in recorded}
        seeds = _fresh_seeds(args.seeds, used)
        print(
            f"confirm study {study.name}: top {len(top)} of {len(study.trials)} finished trials by {study.metric} ({study.direction}), "
            f"seeds {', '.join(map(str, seeds))} (the study's own seeds {sorted(s for s in used if s is not None)} left out)"
        )
        confirmations = []
        for rank, trial in enumerate(recorded, start=1):
            confirmation = ConfigConfirmation(rank, trial.tags.get("trainlab.trial", "?"), trial.run_id, study.value(trial.run), metric=study.metric)
            for seed in seeds:
                _confirm_seed(client, uri, study, trial, confirmation, seed)
            confirmations.append(confirmation)

    table = confirmation_table(confirmations, study.metric)
    check = check_ranking(confirmations, study.direction)
    lines = check.lines(confirmations, len(seeds))
    print(table.text())
    print("\n".join(lines))
    parent_id = study.parent.info.run_id
    client.log_text(parent_id, table.csv(), "confirmation/confirmation.csv")
    client.log_text(parent_id, table.text() + "\n" + "\n".join(lines) + "\n", "confirmation/report.txt")
    figure = confirmation_figure(confirmations, study.metric, study.direction)
    client.log_figure(parent_id, figure, "confirmation/confirmation.png")
    import matplotlib.pyplot as plt  # after the figure set the Agg backend

    plt.close(figure)
    client.set_tag(parent_id, "trainlab.confirm.ranking_holds", str(check.holds).lower())
    client.set_tag(parent_id, "trainlab.confirm.seeds", ",".join(map(str, seeds)))
    print(f"logged on the study's parent run {parent_id}: confirmation/confirmation.csv, confirmation.png, report.txt")
    return 1 if any(c.failures for c in confirmations) else 0


def _fresh_seeds(count: int, used: set) -> list[int]:
    seeds, candidate = [], 1
    while len(seeds) < count:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def _confirm_seed(client, uri: str, study, trial, confirmation, seed: int) -> None:
    import math

    from trainlab.reproduce.rerun import rerun_config
    from trainlab.reproduce.study_runs import objective
    from trainlab.training import RunEnded, launch

    config = rerun_config(trial, seed=seed, run_name=f"{trial.name} seed {seed}")
    tags = {
        "trainlab.kind": "confirmation",
        "trainlab.study": study.name,
        "trainlab.trial": confirmation.trial,
        "trainlab.confirms": trial.run_id,
        "trainlab.seed": str(seed),
    }
    try:
        result = launch(config, uri, parent_run_id=study.parent.info.run_id, tags=tags)
    except RunEnded as ended:
        confirmation.failures.append(f"seed {seed}: {ended.result.status} {ended.result.reason}")
        print(f"  trial {confirmation.trial} seed {seed}: {ended.result.status} ({ended.result.reason})")
        return
    value = objective(client, result.run_id, study.metric, study.direction)
    if math.isnan(value):
        confirmation.failures.append(f"seed {seed}: no {study.metric} logged")
        return
    confirmation.seeds.append(seed)
    confirmation.values.append(value)
    confirmation.run_ids.append(result.run_id)
    print(f"  trial {confirmation.trial} (study rank {confirmation.study_rank}) seed {seed}: {study.metric} = {value:.6g}  run {result.run_id}")
