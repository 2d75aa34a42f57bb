"""The Fashion-MNIST CNN on a GPU: training throughput, time to 90% test accuracy, and a short study.

One script run measures, side by side:

  training   ``studies/fashion_cnn.yaml`` through ``fit_run`` (the one training path), tracked into a
             temporary sqlite MLflow store, on ``--accelerator`` for ``--epochs`` epochs. A callback records
             each epoch's wall time (CUDA synchronised before every clock read), its training time (the
             validation pass taken out) and training samples/s: the median over epochs 2..N, and epoch 1
             apart as warm-up. At every epoch's end it also measures test accuracy on all 10,000 test
             images, which gives the time to 90% test accuracy: seconds from the start of epoch 1 to the end
             of the first epoch at >= 0.90, validation included, the test-accuracy passes themselves not.
             It records where the training split lives during training (the in-memory data path moves it
             to the GPU when it fits: expect ``cuda:0``) and, on a GPU, the peak GPU memory allocated.
  baseline   on a GPU, one epoch of the same config on the CPU, for the ratio ``GPU vs CPU samples/s``
             (the GPU's median epoch against the CPU's one epoch, whose warm-up flatters the GPU a little;
             ``--cpu-baseline-epochs 2`` compares medians instead); ``--no-cpu-baseline`` skips it.
  study      ``trainlab study studies/fashion_cnn.yaml --n-trials N`` in a subprocess, as a user runs it,
             with the same accelerator and epochs: wall time, trials/minute and the best val/acc it prints.

Figures are printed and written as JSON to benchmarks/results/gpu_throughput-<accelerator>.json (or
``--out``), with the device name, torch version and the command line.

    .venv/bin/python benchmarks/gpu_throughput.py                 # on a GPU machine: 5 epochs, 8 trials
    .venv/bin/python benchmarks/gpu_throughput.py --accelerator cpu --epochs 1 --study-trials 2   # quick check

The Fashion-MNIST files are looked up as the datamodule does (Debian's dataset-fashion-mnist,
$TRAINLAB_DATA, ~/.cache/trainlab), and downloaded when missing; a machine without network needs them
in one of those places.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch.callbacks import Callback

from trainlab.config import load_experiment, resolve_run_config
from trainlab.training import fit_run

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "studies" / "fashion_cnn.yaml"
RESULTS = REPO / "benchmarks" / "results"
TARGET_ACCURACY = 0.90
TEST_BATCH = 1000


def synchronized_clock(device: torch.device) -> float:
    """perf_counter after the GPU has finished its queued work: CUDA calls return before the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def split_accuracy(module: torch.nn.Module, split: tuple[torch.Tensor, ...], device: torch.device) -> float:
    """Accuracy over a whole ``(inputs..., labels)`` split, in eval mode, 1000 samples at a time."""
    *inputs, labels = split
    was_training = module.training
    module.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad():
        for start in range(0, len(labels), TEST_BATCH):
            batch = [t[start : start + TEST_BATCH].to(device) for t in inputs]
            logits = module(*batch)
            correct += (logits.argmax(dim=1) == labels[start : start + TEST_BATCH].to(device)).sum()
    module.train(was_training)
    return correct.item() / len(labels)


def training_samples(trainer) -> int:
    """Samples one training epoch goes through: the loader's count, else the train split's size."""
    samples = getattr(trainer.train_dataloader, "num_samples", None)
    return samples if samples is not None else len(trainer.datamodule.splits["train"][-1])


class ThroughputProbe(Callback):
    """Per-epoch times, samples/s and test accuracy; where the data lives; peak GPU memory."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.data_device: str | None = None
        self.train_split_bytes: int | None = None
        self.peak_gpu_memory_bytes: int | None = None
        self._first_start: float | None = None
        self._excluded = 0.0  # seconds spent on test-accuracy passes: measurement, not training
        self._epoch_start = 0.0
        self._validation_start = 0.0
        self._validation = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.data_device is None:
            # After setup, so after the in-memory datamodule has (or has not) moved its splits to the GPU.
            train_split = trainer.datamodule.splits["train"]
            self.data_device = str(train_split[0].device)
            self.train_split_bytes = sum(t.element_size() * t.nelement() for t in train_split)
        self._validation = 0.0
        self._epoch_start = synchronized_clock(pl_module.device)
        if self._first_start is None:
            self._first_start = self._epoch_start

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validation_start = synchronized_clock(pl_module.device)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validation += synchronized_clock(pl_module.device) - self._validation_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs the epoch's validation before this hook, so the epoch's time includes it.
        end = synchronized_clock(pl_module.device)
        epoch_seconds = end - self._epoch_start
        train_seconds = epoch_seconds - self._validation
        samples = training_samples(trainer)
        accuracy = split_accuracy(pl_module, trainer.datamodule.splits["test"], pl_module.device)
        self.epochs.append(
            {
                "epoch": trainer.current_epoch + 1,
                "epoch_seconds": epoch_seconds,
                "train_seconds": train_seconds,
                "validation_seconds": self._validation,
                "samples": samples,
                "samples_per_s": samples / train_seconds,
                "test_acc": accuracy,
                "elapsed_seconds": end - self._first_start - self._excluded,
            }
        )
        self._excluded += synchronized_clock(pl_module.device) - end

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            self.peak_gpu_memory_bytes = torch.cuda.max_memory_allocated(pl_module.device)


def measure_training(accelerator: str, epochs: int, batch_size: int | None, store: str) -> dict[str, Any]:
    """One tracked ``fit_run`` of the CNN config with the probe attached; its figures."""
    overrides = [f"trainer.accelerator={accelerator}", "trainer.devices=1", f"trainer.max_epochs={epochs}"]
    if batch_size is not None:
        overrides.append(f"data.init_args.batch_size={batch_size}")
    config = resolve_run_config(load_experiment(EXPERIMENT, overrides).run)
    if accelerator == "gpu":
        torch.cuda.reset_peak_memory_stats()
    probe = ThroughputProbe()
    started = time.perf_counter()
    result = fit_run(config, f"sqlite:///{store}/mlflow.db", callbacks=[probe])
    wall = time.perf_counter() - started
    return {
        "accelerator": accelerator,
        "epochs": epochs,
        "batch_size": config.document["data"]["init_args"]["batch_size"],
        "wall_seconds": wall,
        "data_device": probe.data_device,
        "train_split_bytes": probe.train_split_bytes,
        "peak_gpu_memory_bytes": probe.peak_gpu_memory_bytes,
        "per_epoch": probe.epochs,
        **throughput(probe.epochs),
        "time_to_target": time_to_accuracy(probe.epochs, TARGET_ACCURACY),
        "final_test_metrics": result.metrics,  # fit_run's test pass, on the best checkpoint
    }


def throughput(epochs: list[dict[str, float]]) -> dict[str, float | None]:
    """Epoch 1 apart (warm-up: CUDA context, cuDNN autotuning, allocator); the median of the rest."""
    rates = [epoch["samples_per_s"] for epoch in epochs]
    return {
        "warmup_samples_per_s": rates[0] if rates else None,
        "median_samples_per_s": statistics.median(rates[1:]) if len(rates) > 1 else None,
    }


def time_to_accuracy(epochs: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """Seconds to the end of the first epoch whose test accuracy reaches ``target``; None if none did."""
    reached = next((epoch for epoch in epochs if epoch["test_acc"] >= target), None)
    if reached is None:
        return None
    return {"target": target, "seconds": reached["elapsed_seconds"], "epoch": reached["epoch"]}


def steady_rate(run: dict[str, Any]) -> float:
    """The median after warm-up where there is one; a one-epoch run has only its first epoch."""
    return run["median_samples_per_s"] or run["warmup_samples_per_s"]


def run_study(accelerator: str, epochs: int, trials: int, workdir: str) -> dict[str, Any]:
    """``trainlab study`` as a user runs it, in its own process; wall time, trials/minute, best val/acc."""
    command = [
        sys.executable, "-m", "trainlab", "study", str(EXPERIMENT), "--n-trials", str(trials),
        f"trainer.accelerator={accelerator}", "trainer.devices=1", f"trainer.max_epochs={epochs}",
        "--tracking-uri", f"sqlite:///{workdir}/study.db", "--storage", f"{workdir}/journal.log",
    ]  # fmt: skip
    started = time.perf_counter()
    # cwd: anything the study writes beside its stores stays in the temporary folder, not the repo.
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    figures: dict[str, Any] = {"command": shlex.join(command), "trials": trials, "wall_seconds": wall, "returncode": done.returncode}
    figures.update(parse_study_output(done.stdout))
    figures["trials_per_minute"] = figures.get("trials_run", trials) / wall * 60
    if done.returncode != 0:
        figures["output_tail"] = (done.stdout[-2000:] + done.stderr[-3000:]).strip()
    return figures


def parse_study_output(stdout: str) -> dict[str, Any]:
    """The trial counts and the best trial from the study's closing lines."""
    figures: dict[str, Any] = {}
    counts = re.search(r"(\d+) complete, (\d+) pruned, (\d+) failed", stdout)
    if counts:
        complete, pruned, failed = map(int, counts.groups())
        figures.update(complete=complete, pruned=pruned, failed=failed, trials_run=complete + pruned + failed)
    best = re.search(r"^best: trial (\d+)\s+(\S+)=([-+0-9.eE]+)", stdout, re.MULTILINE)
    if best:
        figures.update(best_trial=int(best.group(1)), metric=best.group(2), best_value=float(best.group(3)))
    return figures


def device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name()
    return cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_training(label: str, run: dict[str, Any]) -> None:
    print(f"\n{label}: {run['epochs']} epoch(s), batch {run['batch_size']}, {run['wall_seconds']:.1f} s wall for the whole run")
    print(f"  {'epoch':>5} {'train s':>8} {'val s':>6} {'samples/s':>10} {'test acc':>9} {'elapsed s':>10}")
    for epoch in run["per_epoch"]:
        print(
            f"  {epoch['epoch']:>5} {epoch['train_seconds']:8.2f} {epoch['validation_seconds']:6.2f}"
            f" {epoch['samples_per_s']:10,.0f} {epoch['test_acc']:9.4f} {epoch['elapsed_seconds']:10.1f}"
        )
    last = len(run["per_epoch"])
    if run["median_samples_per_s"] is not None:
        print(f"  samples/s (median epoch 2..{last}): {run['median_samples_per_s']:,.0f}   (epoch 1, warm-up: {run['warmup_samples_per_s']:,.0f})")
    else:
        print(f"  samples/s (epoch 1, warm-up included): {run['warmup_samples_per_s']:,.0f}")
    reached = run["time_to_target"]
    if reached:
        print(f"  time to {TARGET_ACCURACY:.0%} test accuracy: {reached['seconds']:.1f} s (epoch {reached['epoch']})")
    else:
        print(f"  time to {TARGET_ACCURACY:.0%} test accuracy: not reached in {last} epoch{'s' if last > 1 else ''}")
    data = f"  data on: {run['data_device']} (train split {run['train_split_bytes'] / 2**20:.0f} MiB)"
    if run["peak_gpu_memory_bytes"] is not None:
        data += f", peak GPU memory allocated {run['peak_gpu_memory_bytes'] / 2**20:.0f} MiB"
    print(data)


def print_study(study: dict[str, Any]) -> None:
    if study["returncode"] != 0:
        print(f"\nstudy: FAILED (exit {study['returncode']}) after {study['wall_seconds']:.0f} s:\n{study['output_tail']}")
        return
    counts = f" ({study['complete']} complete, {study['pruned']} pruned, {study['failed']} failed)" if "complete" in study else ""
    best = f", best {study['metric']} {study['best_value']:.4f} (trial {study['best_trial']})" if "best_value" in study else ", best: not found in its output"
    print(f"\nstudy: {study['trials']} trials: {study['wall_seconds']:.0f} s wall, {study['trials_per_minute']:.1f} trials/minute{counts}{best}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=5, help="trainer.max_epochs, for the run and every study trial")
    parser.add_argument("--batch-size", type=int, default=None, help="data.init_args.batch_size for the run (the study samples its own)")
    parser.add_argument("--study-trials", type=int, default=8, help="trials of the short study; 0 skips it")
    parser.add_argument("--no-cpu-baseline", action="store_true", help="on a GPU, skip the CPU epoch for the GPU vs CPU ratio")
    parser.add_argument("--cpu-baseline-epochs", type=int, default=1, help="CPU epochs for the ratio; from 2 on, its median after warm-up is used")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/gpu_throughput-<accelerator>.json)")
    args = parser.parse_args()
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible to torch; use --accelerator cpu")
    if args.epochs < 1 or args.cpu_baseline_epochs < 1:
        parser.error("--epochs and --cpu-baseline-epochs must be at least 1")
    args.out = args.out or RESULTS / f"gpu_throughput-{args.accelerator}.json"
    return args


def main() -> None:
    args = parse_arguments()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners between the figures
    results: dict[str, Any] = {
        "benchmark": "gpu_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.orig_argv),
        "experiment": str(EXPERIMENT.relative_to(REPO)),
        "accelerator": args.accelerator,
        "device": device_name(args.accelerator),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "lightning": lightning.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    print(f"{results['experiment']} on {args.accelerator}: {results['device']}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    with tempfile.TemporaryDirectory(prefix="trainlab-gpu-bench-") as workdir:
        run = measure_training(args.accelerator, args.epochs, args.batch_size, workdir)
        results["training"] = run
        print_training(f"training on {args.accelerator}", run)

        if args.accelerator == "gpu" and not args.no_cpu_baseline:
            baseline = measure_training("cpu", args.cpu_baseline_epochs, args.batch_size, workdir)
            results["cpu_baseline"] = baseline
            results["gpu_vs_cpu_samples_per_s"] = steady_rate(run) / steady_rate(baseline)
            print_training("CPU baseline", baseline)
            print(f"\nGPU vs CPU samples/s: {results['gpu_vs_cpu_samples_per_s']:.1f}x  (GPU {steady_rate(run):,.0f} vs CPU {steady_rate(baseline):,.0f})")

        if args.study_trials > 0:
            results["study"] = run_study(args.accelerator, args.epochs, args.study_trials, workdir)
            print_study(results["study"])

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.out}")
    if results.get("study", {}).get("returncode"):
        sys.exit(1)


if __name__ == "__main__":
    main()
