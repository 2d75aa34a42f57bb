"""Live progress of a run, through Lightning's progress-bar machinery.

On a terminal (stdout is a TTY, where Lightning's tqdm bar draws): :class:`MetricsProgressBar`, Lightning's
``TQDMProgressBar`` showing the training loss and the monitored metric with its best so far, whatever
``prog_bar`` flag the module logged them with. Elsewhere (CI logs, files, pipes): :class:`EpochLines`, a
Lightning ``ProgressBar`` that prints one calm line per epoch on stderr::

    epoch 3/20  train/loss 0.4102  val/acc 0.9306 (best 0.9514)  1.2 s

A study's trials always print lines, labelled with the trial (``trial 4  epoch 3/20 ...``): several workers
share one terminal, and a bar per trial would overwrite the study's own lines. ``trainer.enable_progress_bar:
false`` turns both off; a progress bar in ``trainer.callbacks`` replaces ours.

A run that trains as a process group (several devices) writes its output to a log file; its rank 0 writes
the lines to the file named by ``TRAINLAB_PROGRESS_FILE`` instead, and the launcher relays them to its
stderr as they come (:func:`relay_progress`).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from trainlab.contract import Monitor

PROGRESS_FILE_ENV = "TRAINLAB_PROGRESS_FILE"  # set in a process group: where rank 0's epoch lines go


class _Shown:
    """What a progress display shows: the training loss, the monitored metric and its best value so far."""

    def __init__(self, monitor: Monitor | None) -> None:
        self.monitor = monitor
        self.best: float | None = None

    def values(self, trainer) -> dict[str, float]:
        metrics = {name: _scalar(value) for name, value in trainer.callback_metrics.items()}
        metrics = {name: value for name, value in metrics.items() if value is not None}
        # The training loss: trainlab's own modules log train/loss; a user's module may say train_loss or loss.
        losses = sorted(name for name in metrics if "loss" in name.rsplit("/", 1)[-1] and not name.startswith(("val", "test")))
        shown = {losses[0]: metrics[losses[0]]} if losses else {}
        name = self.monitor.metric if self.monitor else None
        if name and name in metrics:
            value = metrics[name]
            shown[name] = value
            if math.isfinite(value) and (self.best is None or (value > self.best if self.monitor.mode == "max" else value < self.best)):
                self.best = value
        return shown


def _scalar(value: Any) -> float | None:
    """A logged value as a number; a display never fails the run over a value it cannot show."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several elements
        return None


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


class EpochLines(ProgressBar):
    """One line per training epoch on stderr: the epoch out of ``max_epochs``, the training loss, the
    monitored metric with its best so far, and how long the epoch took. Rank 0 only (Lightning's
    ``ProgressBar.setup`` disables it on other ranks).

    Example::

        trainer = L.Trainer(callbacks=[EpochLines(Monitor("val/acc", "max"))])
        # epoch 1/10  train/loss 1.2043  val/acc 0.8102 (best 0.8102)  0.4 s
    """

    def __init__(self, monitor: Monitor | None = None, label: str = "") -> None:
        super().__init__()
        self.monitor = monitor  # None: the run's monitor, filled in by with_live_progress
        self.label = label
        self._enabled = True
        self._shown: _Shown | None = None
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._shown = _Shown(self.monitor)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning has run this epoch's validation by now: its metrics are in callback_metrics.
        if not self._enabled or self._shown is None:
            return
        parts = [f"{self.label}  " if self.label else "", _epoch_of(trainer)]
        shown = self._shown
        for name, value in shown.values(trainer).items():
            parts.append(f"  {name} {_number(value)}")
            if shown.monitor and name == shown.monitor.metric and shown.best is not None:
                parts.append(f" (best {_number(shown.best)})")
        parts.append(f"  {time.monotonic() - self._started:.1f} s")
        path = os.environ.get(PROGRESS_FILE_ENV)
        if path:  # a process group's rank 0: the launcher relays the file
            with open(path, "a") as relayed:
                relayed.write("".join(parts) + "\n")
        else:
            print("".join(parts), file=sys.stderr, flush=True)


def _epoch_of(trainer) -> str:
    """``epoch 3/20``: counted from 1, out of ``max_epochs`` when there is one."""
    total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
    return f"epoch {trainer.current_epoch + 1}{total}"


class MetricsProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar with the overall progress (``epoch 3/20``) as its description, and the training
    loss and the monitored metric (and its best) in its postfix, also when the module logs them without
    ``prog_bar=True``; without the logger's run id (``v_num``)."""

    def __init__(self, monitor: Monitor | None = None) -> None:
        super().__init__()
        self._shown = _Shown(monitor)

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(_epoch_of(trainer))

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items.update(self._shown.values(trainer))
        if self._shown.best is not None:
            items["best"] = self._shown.best
        return items


def with_live_progress(callbacks: list, enabled: bool | None, monitor: Monitor) -> tuple[list, bool]:
    """``(callbacks, enable_progress_bar)`` for the Trainer: the one progress display this run shows.

    ``enabled`` is ``trainer.enable_progress_bar`` (None: Lightning's default, on). A progress bar of the
    user's (``trainer.callbacks``) wins over the lines a study's trial asks for; off drops them all.
    """
    bars = [c for c in callbacks if isinstance(c, ProgressBar)]
    ours = [c for c in bars if type(c) is EpochLines]
    if enabled is False:
        return [c for c in callbacks if c not in ours], False
    if len(bars) > len(ours):  # the user's own progress bar
        return [c for c in callbacks if c not in ours], True
    for lines in ours:
        lines.monitor = lines.monitor or monitor
    if ours:
        return callbacks, True
    terminal = sys.stdout.isatty() and PROGRESS_FILE_ENV not in os.environ
    display = MetricsProgressBar(monitor) if terminal else EpochLines(monitor)
    return [*callbacks, display], True


@contextmanager
def relay_progress(path: Path, poll_s: float = 0.5) -> Iterator[None]:
    """While the block runs, copy the lines a process group's rank 0 appends to ``path`` onto stderr."""
    done = threading.Event()

    def follow() -> None:
        position = 0
        while True:
            finished = done.wait(poll_s)
            if path.exists():
                with path.open() as lines:
                    lines.seek(position)
                    for line in iter(lines.readline, ""):
                        if not line.endswith("\n"):  # written halfway: read it whole next time
                            break
                        sys.stderr.write(line)
                        position = lines.tell()
                sys.stderr.flush()
            if finished:
                return

    relay = threading.Thread(target=follow, name="trainlab-progress-relay", daemon=True)
    relay.start()
    try:
        yield
    finally:
        done.set()
        relay.join(timeout=5)
