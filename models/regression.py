"""Regression task: MSE or MAE loss on standardised targets; MSE, MAE and R² in the data's own units."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from trainlab.models.losses import RegressionLoss, regression_loss
from trainlab.models.task import TrainlabTask


class RegressionTask(TrainlabTask):
    """Subclasses build ``self.net`` (``num_outputs`` values out) and call ``super().__init__``.

    Batches are ``(x, y)``; ``y`` is ``(N,)`` for one target or ``(N, num_outputs)``. The datamodule
    reports the training targets' mean and std (``target_mean``/``target_std``, filled into the model's
    arguments): the net learns standardised targets, so the loss is well scaled whatever the units, and
    ``forward`` returns predictions in the data's units, so ``val/mae`` reads as "off by this much".

    Example (the diabetes progression score is in the hundreds)::

        model = MLPRegressor(num_outputs=1, input_shape=[10], target_mean=152.0, target_std=77.0)
        model(x)  # (N, 1), in score units
    """

    monitor = "val/mae"
    monitor_mode = "min"
    task_type = "regression"

    def __init__(
        self,
        loss: RegressionLoss = "mse",
        l1_penalty: float = 0.0,
        target_mean: float | None = None,
        target_std: float | None = None,
    ) -> None:
        super().__init__(l1_penalty=l1_penalty)
        if target_std is not None and target_std <= 0:
            raise ValueError(f"target_std must be > 0, got {target_std}")
        self.loss_name = loss
        # Buffers: saved in checkpoints, moved with the model.
        self.register_buffer("target_mean", torch.tensor(0.0 if target_mean is None else float(target_mean)))
        self.register_buffer("target_std", torch.tensor(1.0 if target_std is None else float(target_std)))
        metrics = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        self.metrics = nn.ModuleDict({f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in ("train", "val", "test")})

    net: nn.Module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs) * self.target_std + self.target_mean

    def shared_step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        *inputs, y = batch
        prediction = self(*inputs).reshape(y.shape)
        scale = lambda v: (v - self.target_mean) / self.target_std  # noqa: E731
        loss = regression_loss(self.loss_name, scale(prediction), scale(y))
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(prediction.detach(), y)
        self.log_epoch_metric(f"{stage}/loss", loss.detach(), batch_size=len(y))
        return loss
