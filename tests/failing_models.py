"""LightningModules that fail on purpose, importable by class path from experiment files in tests."""

from __future__ import annotations

from trainlab.models import MLPClassifier


class FailsAtSecondEpoch(MLPClassifier):
    """Trains one epoch normally, then raises: the run must end FAILED with epoch 0's metrics kept."""

    def on_train_epoch_start(self) -> None:
        if self.current_epoch == 1:
            raise RuntimeError("deliberate failure at epoch 1")


class SlowClassifier(MLPClassifier):
    """Sleeps each step so a test can interrupt a run mid-training."""

    def training_step(self, batch, batch_idx):
        import time

        time.sleep(0.05)
        return super().training_step(batch, batch_idx)


class RankZeroDiesAtSecondEpoch(MLPClassifier):
    """Rank 0 of a DDP group vanishes at epoch 1 as if killed by the OOM killer: no exception, no cleanup."""

    def on_train_epoch_start(self) -> None:
        if self.current_epoch == 1 and self.global_rank == 0:
            import os

            os._exit(9)
