"""The SLURM path's overhead: the demo study with 2 workers on this machine against a 2-task SLURM array.

Both run the CLI as a subprocess in a fresh temporary directory (their own default stores there):

    local: trainlab study studies/digits_mlp.yaml --jobs 2
    slurm: trainlab study studies/digits_mlp.yaml --launcher slurm --jobs 2 --wait

with the same trials and epochs. The SLURM side pays what the path adds: ``sbatch --test-only``, the
submission, waiting for the scheduler to start the tasks, a fresh interpreter and imports per task, the
``--wait`` poll (every 3 s) and the close. Rounds alternate which one goes first, so a busy spell of a
shared machine hits both. Needs a SLURM cluster whose nodes see this directory (``.ci/slurm-up.sh``).

    .venv/bin/python benchmarks/slurm_overhead.py                        # 2 rounds, 6 trials x 10 epochs (~4 min on 2 cores)
    .venv/bin/python benchmarks/slurm_overhead.py --trials 20 --epochs 20  # the full demo study

Prints each wall time, the mean of each side and slurm / local (1.0: no overhead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = REPO / "studies" / "digits_mlp.yaml"
EXPERIMENT = "digits-mlp"
COMMANDS = {"local": [], "slurm": ["--launcher", "slurm", "--wait"]}


def measure(name: str, trials: int, epochs: int) -> dict:
    from optuna.trial import TrialState

    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.storage import default_storage_url

    with tempfile.TemporaryDirectory(prefix=f"trainlab-{name}-bench-") as tmp:
        command = [str(Path(sys.executable).parent / "trainlab"), "study", str(STUDY_FILE), "--jobs", "2",
                   "--n-trials", str(trials), f"trainer.max_epochs={epochs}", *COMMANDS[name]]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        study, _ = load_existing_study(default_storage_url(f"sqlite:///{tmp}/mlflow.db"), EXPERIMENT)
        counted = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
        return {"wall": wall, "trials": counted, "best": study.best_value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each runs both once)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("no sbatch on PATH: start a cluster first (sudo .ci/slurm-up.sh)")

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.trials} trials x {args.epochs} epochs, 2 workers", flush=True)
    results: dict[str, list[dict]] = {"local": [], "slurm": []}
    for round_index in range(args.rounds):
        order = ("local", "slurm") if round_index % 2 == 0 else ("slurm", "local")
        for name in order:
            figures = measure(name, args.trials, args.epochs)
            results[name].append(figures)
            print(f"  round {round_index + 1}/{args.rounds} {name:>5}: wall {figures['wall']:6.1f} s, "
                  f"{figures['trials']} trials, best val/acc {figures['best']:.4f}", flush=True)
    wall = {name: sum(r["wall"] for r in runs) / len(runs) for name, runs in results.items()}
    print(f"\nmean wall: local --jobs 2 {wall['local']:.1f} s, slurm array of 2 {wall['slurm']:.1f} s "
          f"(+{wall['slurm'] - wall['local']:.1f} s)")
    print(f"slurm / local wall {wall['slurm'] / wall['local']:.2f}", flush=True)


if __name__ == "__main__":
    main()
