"""Parallel trials: ``trainlab study --jobs 2`` vs ``--jobs 1``, trials per hour on this machine.

Both run the demo study file as a user would (a ``trainlab study`` process each, with its interpreter
start-up and worker start-up included), with the same trials: random sampler, same seed, no pruning, so
both do the same work. Prints trials/hour end to end and in steady state (first trial start to last
trial end, from the study storage), and the ratios. Goal on 2 cores: >= 1.7x.

On a shared machine other processes take cores from both runs; repeat with --rounds to see the spread.

    .venv/bin/python benchmarks/parallel.py                     # 8 trials x 10 epochs, jobs 1 then jobs 2
    .venv/bin/python benchmarks/parallel.py --trials 12 --epochs 5 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_study(file: Path, jobs: int, trials: int, epochs: int) -> dict:
    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.storage import default_storage_url

    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        command = [
            sys.executable, "-m", "trainlab", "study", str(file), f"trainer.max_epochs={epochs}", "study.pruner=none",
            "study.sampler={type: random, seed: 0}", "--n-trials", str(trials), "--jobs", str(jobs), "--study-name", "bench", "--tracking-uri", uri,
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"jobs={jobs} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        study, _ = load_existing_study(default_storage_url(uri), "bench")
        finished = [t for t in study.trials if t.datetime_complete]
        span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
        return {"wall": wall, "trials": len(finished), "per_hour": len(finished) / wall * 3600, "steady_per_hour": len(finished) / span * 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=REPO / "studies" / "digits_mlp.yaml")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes slow small-model training a lot)")
    print(f"{args.file.name}: {args.trials} trials x {args.epochs} epochs, no pruning")
    print(f"{'round':<7}{'jobs':>5}{'wall s':>9}{'trials/h':>10}{'steady trials/h':>17}")
    ratios = []
    for round_number in range(1, args.rounds + 1):
        results = {jobs: run_study(args.file, jobs, args.trials, args.epochs) for jobs in (1, 2)}
        for jobs, result in results.items():
            print(f"{round_number:<7}{jobs:>5}{result['wall']:>9.0f}{result['per_hour']:>10.0f}{result['steady_per_hour']:>17.0f}")
        ratios.append((results[2]["per_hour"] / results[1]["per_hour"], results[2]["steady_per_hour"] / results[1]["steady_per_hour"]))
    for end_to_end, steady in ratios:
        print(f"jobs 2 / jobs 1 trials per hour: {end_to_end:.2f} end to end, {steady:.2f} steady state  (goal >= 1.7)")


if __name__ == "__main__":
    main()
