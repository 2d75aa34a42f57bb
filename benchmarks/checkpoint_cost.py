"""What the resume checkpoint costs per epoch: tracked runs with it written every epoch against runs that never
write it, interleaved in one process, as a ratio of epoch time.

Both paths are ``fit_run`` itself into a temporary sqlite store; only ``TRAINLAB_CHECKPOINT_EVERY_S`` differs
(0: a full checkpoint at every epoch start; 1e9: none). Epoch times are the gaps between epoch ends; the
first is warm-up. The hook that writes the checkpoint (a logger flush and the file) is also timed on its
own, which a busy machine disturbs far less than whole epochs. Goal (issue 15): at most 5% per epoch on the
Fashion-MNIST CNN.

    .venv/bin/python benchmarks/checkpoint_cost.py                   # Fashion CNN, 12,000 images, 3 rounds
    .venv/bin/python benchmarks/checkpoint_cost.py --case digits     # a small model, where a write weighs most
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import CASES, EpochEndTimes, resolved  # noqa: E402  (same cases and epoch timer as overhead.py)

GOAL = 1.05
EVERY_S = {"checkpoint every epoch": "0", "no checkpoint": "1000000000"}


SAVE_TIMES: list[float] = []  # seconds spent in the resume checkpoint's hook (its flush and write), per call


def time_the_checkpoint_hook() -> None:
    """Wrap the hook that writes the resume checkpoint: its own time is a figure other processes barely move."""
    import time

    from trainlab.training.resume import ResumeCheckpoint

    original = ResumeCheckpoint.on_train_epoch_start

    def timed(self, trainer, pl_module):
        start = time.perf_counter()
        original(self, trainer, pl_module)
        if trainer.current_epoch > 0:
            SAVE_TIMES.append(time.perf_counter() - start)

    ResumeCheckpoint.on_train_epoch_start = timed


def measure(case: str, rounds: int) -> dict[str, list[float]]:
    from trainlab.training import fit_run

    path, overrides, _ = CASES[case]
    epochs: dict[str, list[float]] = {name: [] for name in EVERY_S}
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-ckpt-") as store:
        os.environ["TRAINLAB_CHECKPOINTS"] = f"{store}/checkpoints"
        uri = f"sqlite:///{store}/mlflow.db"
        for round_index in range(rounds):
            for name, every_s in EVERY_S.items():
                os.environ["TRAINLAB_CHECKPOINT_EVERY_S"] = every_s
                timer = EpochEndTimes()
                fit_run(resolved(path, overrides), uri, callbacks=[timer])
                gaps = [b - a for a, b in zip(timer.ends, timer.ends[1:])]
                epochs[name] += gaps
                print(f"  {case} round {round_index + 1}/{rounds} {name:>22}: epochs " + " ".join(f"{t:.3f}" for t in gaps), flush=True)
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=list(CASES), default="fashion")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    time_the_checkpoint_hook()
    epochs = measure(args.case, args.rounds)
    best = {name: min(times) for name, times in epochs.items()}
    median = {name: statistics.median(times) for name, times in epochs.items()}
    for name in EVERY_S:
        print(f"  {name:>22}: fastest epoch {best[name]:.4f} s, median {median[name]:.4f} s")
    ratio = best["checkpoint every epoch"] / best["no checkpoint"]
    verdict = "met" if ratio <= GOAL else "MISSED"
    print(f"{args.case}: checkpoint every epoch / none, fastest epochs {ratio:.3f}, medians "
          f"{median['checkpoint every epoch'] / median['no checkpoint']:.3f} (goal <= {GOAL}: {verdict})")
    # The write's own time against the fastest epoch without it: steady on a busy machine, where epoch
    # ratios scatter.
    write = statistics.median(SAVE_TIMES) if SAVE_TIMES else 0.0
    share = 1 + write / best["no checkpoint"]
    print(f"{args.case}: checkpoint write {write * 1000:.1f} ms (median of {len(SAVE_TIMES)}) = {share:.3f} x the fastest epoch "
          f"(goal <= {GOAL}: {'met' if share <= GOAL else 'MISSED'})")


if __name__ == "__main__":
    main()
