"""Measured properties of the trained model, logged once at the end of fit: its size and its speed.

A run measures them when its config says ``measure: [model/params, model/latency_ms]`` (a study whose
metrics or constraints name them adds that to every trial's config, so the refit, ``trainlab reproduce``
and ``trainlab confirm`` of a trial measure them too).

- ``model/params``: the number of parameters (trainable or not) of the LightningModule.
- ``model/latency_ms``: inference time per sample, in milliseconds, on the run's device: the module in
  eval mode under ``torch.inference_mode``, forward on validation batches (training batches when there is
  no validation data), ``WARMUP`` untimed batches, then ``REPEATS`` rounds of ``TIMED`` timed batches
  (CUDA synchronised before and after each); per round the median of batch time / batch size, and the
  fastest round (as ``timeit`` advises: other processes only ever add time). A timing: it varies from
  run to run and from machine to machine.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from lightning.pytorch.callbacks import Callback

PARAMS = "model/params"
LATENCY = "model/latency_ms"
MEASURES = (PARAMS, LATENCY)
WARMUP = 3
TIMED = 10
REPEATS = 5


class ModelMeasurements(Callback):
    """Logs the chosen measures of the trained module once, when fit ends (step = the epoch count).

    Example::

        trainer = L.Trainer(callbacks=[ModelMeasurements(["model/params", "model/latency_ms"])])
    """

    def __init__(self, measures: list[str]) -> None:
        self.measures = list(measures)

    def on_fit_end(self, trainer, pl_module) -> None:
        values: dict[str, float] = {}
        if PARAMS in self.measures:
            values[PARAMS] = float(sum(p.numel() for p in pl_module.parameters()))
        if LATENCY in self.measures:
            values[LATENCY] = latency_ms(pl_module, _batches(trainer))
        if trainer.logger is not None and values:  # rank 0 records; the logger is rank-zero only
            trainer.logger.log_metrics(values, step=trainer.current_epoch)


def latency_ms(module, batches: list[Any]) -> float:
    """Per-sample forward time (ms) of ``module``: the fastest of ``REPEATS`` medians over ``TIMED`` batches,
    after ``WARMUP`` untimed ones."""
    import torch

    if not batches:
        raise ValueError(f"{LATENCY}: no validation or training batch to time the model on")
    device = module.device
    inputs = [_inputs(batch).to(device) for batch in batches]
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = module.training
    module.eval()
    rounds = []
    try:
        with torch.inference_mode():
            for index in range(WARMUP):
                module(inputs[index % len(inputs)])
            for _ in range(REPEATS):
                per_sample = []
                for index in range(TIMED):
                    x = inputs[index % len(inputs)]
                    synchronize()
                    start = time.perf_counter()
                    module(x)
                    synchronize()
                    per_sample.append((time.perf_counter() - start) * 1000.0 / len(x))
                rounds.append(statistics.median(per_sample))
    finally:
        module.train(was_training)
    return min(rounds)


def _inputs(batch: Any):
    """The model input of a batch: ``x`` of ``(x, y)``, or the batch itself."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _batches(trainer) -> list[Any]:
    datamodule = trainer.datamodule
    for name in ("val_dataloader", "train_dataloader"):
        try:
            loader = getattr(datamodule, name)()
        except Exception:  # no such split (val_fraction 0, a datamodule without it)
            continue
        batches = []
        for batch in loader if loader is not None else ():
            batches.append(batch)
            if len(batches) == TIMED:
                break
        if batches:
            return batches
    return []
