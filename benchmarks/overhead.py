"""What trainlab costs over a hand-written PyTorch loop: per-epoch time ratios and fixed cost per run.

Each case trains the same net (same init), on the same in-memory tensors, with the same optimizer, batch
size and epochs, in this one process:

  plain      a hand-written loop: shuffle, slice batches, step; then a validation pass (loss, accuracy)
  lightning  reference: the bare net and loss in a minimal LightningModule, the same TensorBatchLoader,
             a Trainer with no callbacks, metrics or logging: Lightning's own floor
  trainlab   the trainlab model (metrics included) and TensorBatchLoader through the Trainer trainlab
             builds (its checkpoint and diagnostics callbacks), no logger, no MLflow; then the test pass
  tracked    ``fit_run`` itself, into a temporary sqlite MLflow store

An epoch's time is the gap between two consecutive epoch ends (training steps, validation and every
epoch-level hook included); the first epoch is warm-up and not counted. Ratios compare the fastest
epochs (as ``timeit`` advises: other processes only add time); medians are printed beside them. The
fixed cost of a run is its wall time minus its epochs: building data, net and trainer, the test pass,
recording. Rounds are interleaved (plain, lightning, trainlab, tracked, plain, ...) so a busy spell of a
shared machine hits all paths. On a machine busy with other work, two torch threads wait on each other
and epoch times scatter tenfold: there, measure with ``--threads 1 --clock cpu`` (this process's CPU
time, which other processes do not inflate; waits on disk, such as MLflow's sqlite writes, not counted).

Goals: trainlab ≤ 1.3× plain per epoch for the digits MLP (overhead-bound), ≤ 1.05× for the
Fashion-MNIST CNN (compute-bound); tracking adds ≤ 10% per epoch for the digits MLP.

    .venv/bin/python benchmarks/overhead.py                  # both cases, ~3 minutes on 2 CPU cores
    .venv/bin/python benchmarks/overhead.py --case digits --rounds 5
    .venv/bin/python benchmarks/overhead.py --threads 1 --clock cpu     # on a busy machine
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.cli import instantiate_class

from trainlab.config import load_experiment, resolve_run_config
from trainlab.training import build, fit_run
# fit_run's own trainer builder, so the untracked path has exactly the callbacks and settings a tracked run has.
from trainlab.training.prepare import prepare_run

STUDIES = Path(__file__).resolve().parents[1] / "studies"

# case -> (experiment file, overrides, goal for trainlab/plain per epoch)
CASES = {
    "digits": (STUDIES / "digits_mlp.yaml", ["trainer.max_epochs=15"], 1.3),
    # A 12,000-image subset keeps the case to a minute; the per-image work is the full model's.
    "fashion": (STUDIES / "fashion_cnn.yaml", ["trainer.max_epochs=4", "data.init_args.limit_train=12000"], 1.05),
}
TRACKING_GOAL = 1.10  # tracked/trainlab per epoch, digits MLP
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]  # set from --clock


class EpochEndTimes(Callback):
    """Timestamps of every training epoch's end (after its validation); differences are whole-epoch times."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.ends.append(clock())


def resolved(path: Path, overrides: list[str]):
    return resolve_run_config(load_experiment(path, overrides).run)


def built(config):
    """Seeded datamodule and model as the training path builds them."""
    L.seed_everything(config.seed, verbose=False)
    datamodule = build.build_datamodule(config)
    config = build.with_data_facts(config, datamodule)
    return datamodule, build.build_model(config)


def plain_loop(config) -> tuple[float, list[float]]:
    """The loop a user would write by hand around the same net; returns (run time, epoch end times)."""
    start = clock()
    datamodule, model = built(config)
    net = model.net
    optimizer = instantiate_class(net.parameters(), config.document["optimizer"])
    (x, y), (x_val, y_val) = datamodule.splits["train"], datamodule.splits["val"]
    batch, eval_batch = datamodule.batch_size, datamodule.eval_batch_size
    ends = []
    for _ in range(config.document["trainer"]["max_epochs"]):
        net.train()
        order = torch.randperm(len(y))
        xs, ys = x[order], y[order]
        train_loss = torch.zeros(())
        for i in range(0, len(ys), batch):
            loss = F.cross_entropy(net(xs[i : i + batch]), ys[i : i + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.detach() * len(ys[i : i + batch])
        net.eval()
        val_loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        with torch.no_grad():
            for i in range(0, len(y_val), eval_batch):
                logits = net(x_val[i : i + eval_batch])
                val_loss += F.cross_entropy(logits, y_val[i : i + eval_batch], reduction="sum")
                correct += (logits.argmax(1) == y_val[i : i + eval_batch]).sum()
        _ = (train_loss.item() / len(y), val_loss.item() / len(y_val), correct.item() / len(y_val))
        ends.append(clock())
    return clock() - start, ends


class BareModule(L.LightningModule):
    """The net and its loss, nothing else: what Lightning itself costs per step."""

    def __init__(self, net: torch.nn.Module, optimizer: dict) -> None:
        super().__init__()
        self.net, self.optimizer = net, optimizer

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):  # both cases' experiment files have no lr_scheduler
        return instantiate_class(self.parameters(), self.optimizer)


def lightning_bare(config) -> tuple[float, list[float]]:
    start = clock()
    datamodule, model = built(config)
    timer = EpochEndTimes()
    trainer = L.Trainer(
        max_epochs=config.document["trainer"]["max_epochs"],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    trainer.fit(BareModule(model.net, config.document["optimizer"]), datamodule=datamodule)
    return clock() - start, timer.ends


def trainlab_untracked(config) -> tuple[float, list[float]]:
    """fit_run's build, fit and test, without the MLflow run and logger."""

    start = clock()
    timer = EpochEndTimes()
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as checkpoints:
        prepared = prepare_run(config, callbacks=[timer], checkpoint_dir=checkpoints)
        trainer, model, datamodule, checkpoint = prepared.trainer, prepared.model, prepared.datamodule, prepared.checkpoint
        # LearningRateMonitor refuses a trainer without a logger; it is tracking, measured in the third path.
        trainer.callbacks = [cb for cb in trainer.callbacks if not isinstance(cb, LearningRateMonitor)]
        trainer.fit(model, datamodule=datamodule)
        trainer.test(model, datamodule=datamodule, ckpt_path="best" if checkpoint else None, verbose=False, weights_only=False)
    return clock() - start, timer.ends


def trainlab_tracked(config, uri: str) -> tuple[float, list[float]]:
    start = clock()
    timer = EpochEndTimes()
    fit_run(config, uri, callbacks=[timer])
    return clock() - start, timer.ends


def measure(case: str, rounds: int) -> dict[str, dict[str, float]]:
    """{path: {"best": fastest epoch after the first, "median": median epoch, "fixed": median fixed cost}}."""
    path, overrides, _ = CASES[case]
    epoch_times: dict[str, list[float]] = {"plain": [], "lightning": [], "trainlab": [], "tracked": []}
    fixed: dict[str, list[float]] = {name: [] for name in epoch_times}
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-store-") as store:
        uri = f"sqlite:///{store}/mlflow.db"
        paths = {
            "plain": plain_loop,
            "lightning": lightning_bare,
            "trainlab": trainlab_untracked,
            "tracked": lambda config: trainlab_tracked(config, uri),
        }
        for round_index in range(rounds):
            for name, run in paths.items():
                wall, ends = run(resolved(path, overrides))
                epochs = [b - a for a, b in zip(ends, ends[1:])]
                epoch_times[name] += epochs
                # Fixed cost: wall time beyond len(ends) typical epochs (so the first epoch's warm-up counts).
                fixed[name].append(wall - statistics.median(epochs) * len(ends))
                print(f"  {case} round {round_index + 1}/{rounds} {name:>9}: wall {wall:6.2f} s, epochs " + " ".join(f"{t:.3f}" for t in epochs), flush=True)
    return {
        name: {"best": min(times), "median": statistics.median(times), "fixed": statistics.median(fixed[name])}
        for name, times in epoch_times.items()
    }


def report(case: str, results: dict[str, dict[str, float]]) -> None:
    """Ratios of the fastest epochs: other processes only ever add time, so the minimum is the least disturbed."""
    goal = CASES[case][2]
    best = {name: figures["best"] for name, figures in results.items()}
    median_plain = results["plain"]["median"]
    print(f"\n{case}: epoch times after the first (fastest and median over all rounds), fixed cost per run")
    print(f"  {'path':<10} {'best s':>8} {'x plain':>8} {'median s':>9} {'x plain':>8} {'fixed s':>8}")
    for name, figures in results.items():
        print(
            f"  {name:<10} {figures['best']:8.4f} {figures['best'] / best['plain']:8.3f}"
            f" {figures['median']:9.4f} {figures['median'] / median_plain:8.3f} {figures['fixed']:8.2f}"
        )
    untracked = best["trainlab"] / best["plain"]
    print(f"  trainlab/lightning {best['trainlab'] / best['lightning']:.3f} (what trainlab adds to Lightning's own loop)")
    print(f"  trainlab/plain {untracked:.3f} (goal <= {goal}: {'met' if untracked <= goal else 'MISSED'})")
    tracking = best["tracked"] / best["trainlab"]
    line = f"  tracked/trainlab {tracking:.3f}"
    if case == "digits":
        line += f" (goal <= {TRACKING_GOAL}: {'met' if tracking <= TRACKING_GOAL else 'MISSED'})"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=3, help="runs per path, interleaved")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core); 1 steadies figures on a busy machine")
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="wall time, or this process's CPU time (use with --threads 1)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners between the figures

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock", flush=True)
    for case in CASES if args.case == "all" else [args.case]:
        if case == "fashion" and not _fashion_available():
            print("\nfashion: skipped, the Fashion-MNIST files are not available (apt-get install dataset-fashion-mnist)")
            continue
        report(case, measure(case, args.rounds))


def _fashion_available() -> bool:
    from trainlab.datamodules import FashionMNIST

    return FashionMNIST(download=False).locate() is not None


if __name__ == "__main__":
    main()
