"""Cost of trainlab's default-on diagnostics: epoch time of the Fashion-MNIST CNN with them vs without them.

Both configurations go through the one training path (``fit_run``) in this process, interleaved round by
round so that a slower spell of a shared machine hits both. An epoch's time is the gap between two
consecutive ends of training epochs (training steps, validation, every epoch-level hook and the
epoch's metric batch included); the first epoch of each run is warm-up and not counted. Prints the
median epoch time of each configuration and their ratio (goal: all default-on diagnostics <= 1.03).

On a busy machine whole-epoch ratios are noisy, so the time spent inside the diagnostics' own training
and validation hooks is also measured directly and printed as a share of the epoch time; on CPU that
share is exact (on a GPU, kernels launched by a hook may finish after it returns).

    .venv/bin/python benchmarks/diagnostics_cost.py                     # ~2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/diagnostics_cost.py --expensive         # also with the off-by-default ones
    .venv/bin/python benchmarks/diagnostics_cost.py --train-images 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from lightning.pytorch.callbacks import Callback


class EpochEndTimes(Callback):
    """Wall-clock and process CPU time at every training epoch's end; differences are whole-epoch times.

    CPU time is reported next to wall time because on a shared machine other processes stretch wall time
    but not (much) the CPU time this process spends.
    """

    def __init__(self) -> None:
        self.ends: list[tuple[float, float]] = []
        self.first_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.first_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.ends.append((time.perf_counter(), time.process_time()))

    def epoch_times(self) -> list[tuple[float, float]]:
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.ends, self.ends[1:])]


class HookClock:
    """Wraps the diagnostics callbacks' epoch-time hooks (training, validation, optimiser steps) to time them."""

    EPOCH_HOOKS = ("on_train_", "on_before_", "on_after_", "on_validation_")

    def __init__(self) -> None:
        self.seconds = 0.0

    def instrument(self, callbacks: list) -> list:
        for callback in callbacks:
            for name in dir(type(callback)):
                if name.startswith(self.EPOCH_HOOKS) and name in vars(type(callback)):
                    setattr(callback, name, self._timed(getattr(callback, name)))
        return callbacks

    def _timed(self, hook):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


CONFIGURATIONS = {
    "none": {"enabled": False},
    "default": {},
    "expensive": {"activation_histograms": True, "gradient_flow": {"per_step": True}},
}


def run_document(diagnostics: dict, train_images: int, epochs: int, device: str) -> dict:
    return {
        "seed_everything": 0,
        "model": {"class_path": "CNNClassifier", "init_args": {"channels": [32, 64], "hidden_size": 128}},
        "data": {"class_path": "FashionMNIST", "init_args": {"batch_size": 128, "limit_train": train_images, "val_fraction": 0.1}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}},
        "trainer": {
            "max_epochs": epochs,
            "accelerator": device,
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_test_batches": 2,  # the test pass is not part of an epoch's time
        },
        "tracking": {"experiment": "diagnostics-cost"},
        "diagnostics": diagnostics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=12000, help="Fashion-MNIST training images used (before the validation split)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per configuration, interleaved")
    parser.add_argument("--device", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    parser.add_argument("--expensive", action="store_true", help="also measure with the off-by-default diagnostics on")
    args = parser.parse_args()

    import trainlab.diagnostics
    from trainlab.config import resolve_run_config
    from trainlab.training import fit_run

    clock = HookClock()
    make_callbacks = trainlab.diagnostics.diagnostic_callbacks
    # fit_run imports the hook by name when it builds the trainer, so wrapping the module attribute reaches it.
    trainlab.diagnostics.diagnostic_callbacks = lambda settings, model, **options: clock.instrument(make_callbacks(settings, model, **options))
    hook_seconds, default_seconds = 0.0, 0.0

    names = ["none", "default"] + (["expensive"] if args.expensive else [])
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        for round_index in range(args.rounds):
            for name in names:
                config = resolve_run_config(run_document(CONFIGURATIONS[name], args.train_images, args.epochs, args.device))
                timer = EpochEndTimes()
                clock.seconds = 0.0
                fit_run(config, uri, callbacks=[timer])
                times[name].extend(timer.epoch_times())
                if name == "default":  # all epochs, warm-up included, on both sides of the share
                    hook_seconds += clock.seconds
                    default_seconds += timer.ends[-1][0] - timer.first_start
                epochs = " ".join(f"{wall:.2f}s/{cpu:.2f}s" for wall, cpu in timer.epoch_times())
                print(f"round {round_index + 1}/{args.rounds} {name:>9} (wall/cpu per epoch): {epochs}", flush=True)

    base = [statistics.median(t[k] for t in times["none"]) for k in (0, 1)]
    print(f"\nFashion-MNIST CNN, {args.train_images} training images, median epoch time over {len(times['none'])} epochs each:")
    for name in names:
        wall, cpu = (statistics.median(t[k] for t in times[name]) for k in (0, 1))
        print(f"  diagnostics {name:>9}: wall {wall:.3f} s (ratio {wall / base[0]:.3f})   cpu {cpu:.3f} s (ratio {cpu / base[1]:.3f})")
    print(f"time inside the default diagnostics' epoch hooks: {hook_seconds:.3f} s of {default_seconds:.1f} s of training "
          f"({100 * hook_seconds / default_seconds:.2f}%)")


if __name__ == "__main__":
    main()
