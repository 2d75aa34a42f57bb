"""Per-trial fixed cost of a study against the training a trial does.

Two small studies run in this process, with the demo's model and data, no pruning, random sampling of
dropout only (same work per trial): one at 1 epoch per trial, one at ``--epochs``. A trial's duration
(from Optuna: asked to told) is ``fixed + epochs x epoch``; the two means give both terms. ``fixed`` is
everything that is not an epoch: sampling, resolving the config, building data, model and trainer,
creating the MLflow run and recording params and artifacts, the test pass, telling the storage. The gap
between one trial's end and the next one's start (claiming the next trial, reaping, the progress line)
is printed too. Prints the fixed cost's share of a demo trial (20 epochs).

    .venv/bin/python benchmarks/trial_cost.py                      # 4 trials at 1 epoch, 4 at 20 epochs
    .venv/bin/python benchmarks/trial_cost.py --trials 6 --epochs 10
    .venv/bin/python benchmarks/trial_cost.py --threads 1          # as one of two --jobs 2 workers runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_EPOCHS = 20


def run_study(epochs: int, trials: int) -> dict:
    from trainlab.cli import main
    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.storage import default_storage_url

    document = yaml.safe_load((REPO / "studies" / "digits_mlp.yaml").read_text())
    document["trainer"]["max_epochs"] = epochs
    document["study"].update({"n_trials": trials, "pruner": "none", "sampler": {"type": "random", "seed": 0}, "jobs": 1})  # one worker: trials one after another
    document["search_space"] = {"model.init_args.dropout": {"low": 0.0, "high": 0.3}}
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        uri = f"sqlite:///{tmp}/mlflow.db"
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            if main(["study", str(path), "--study-name", "bench", "--tracking-uri", uri]) != 0:
                raise SystemExit(f"the {epochs}-epoch study failed")
        finally:
            os.chdir(cwd)
        study, _ = load_existing_study(default_storage_url(uri), "bench")
        trials_done = sorted(study.trials, key=lambda t: t.number)
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials_done]
        gaps = [(b.datetime_start - a.datetime_complete).total_seconds() for a, b in zip(trials_done, trials_done[1:])]
        # The first trial of a process pays one-off imports and parser set-up; it is not a per-trial cost.
        return {"duration": statistics.median(durations[1:]), "gap": statistics.median(gaps) if gaps else 0.0, "first": durations[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own, one per core)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.trials < 2 or args.epochs < 2:
        raise SystemExit("--trials and --epochs must be >= 2")

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes slow small-model training a lot)")
    short = run_study(1, args.trials)
    long = run_study(args.epochs, args.trials)
    epoch = (long["duration"] - short["duration"]) / (args.epochs - 1)
    if epoch <= 0:
        raise SystemExit(f"epochs too fast to separate from noise ({short} vs {long}); use more --epochs")
    fixed = short["duration"] - epoch
    demo_trial = fixed + DEMO_EPOCHS * epoch
    print(f"median trial: {short['duration']:.2f} s at 1 epoch, {long['duration']:.2f} s at {args.epochs} epochs "
          f"(first trial of a process: {short['first']:.2f} s)")
    print(f"per epoch: {epoch:.3f} s   fixed per trial: {fixed:.2f} s   between trials: {statistics.mean([short['gap'], long['gap']]):.2f} s")
    print(f"fixed / training time of a {DEMO_EPOCHS}-epoch demo trial: {fixed / (DEMO_EPOCHS * epoch):.2f}  "
          f"(fixed is {100 * fixed / demo_trial:.0f}% of the trial)")


if __name__ == "__main__":
    main()
