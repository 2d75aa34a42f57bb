"""Loss functions by name, and the L1 weight penalty.

Names are ``Literal`` types so a misspelt loss in an experiment file is reported with its key path
(``model.init_args.loss``) before any run exists.

Cross-entropy, BCE, MSE and MAE are PyTorch's own. The soft Dice loss is written here: torchmetrics' Dice
is a metric on hard labels (no gradient), and the formula is three lines.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# Classification: "bce" is for two classes (one logit, sigmoid); "cross_entropy" for any number (softmax).
ClassificationLoss = Literal["cross_entropy", "bce"]
# Regression and forecasting.
RegressionLoss = Literal["mse", "mae"]
# Segmentation. For multi-class masks "bce" is its multi-class form, softmax cross-entropy.
SegmentationLoss = Literal["bce", "dice", "bce_dice"]


def regression_loss(name: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if name == "mse":
        return F.mse_loss(prediction, target)
    if name == "mae":
        return F.l1_loss(prediction, target)
    raise ValueError(f"unknown regression loss {name!r}; expected mse or mae")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − Dice of the predicted probabilities against the mask, averaged over foreground classes.

    ``logits``: (N, 1, H, W) for binary masks (sigmoid), (N, C, H, W) for C classes (softmax; class 0 is
    background and left out, as in the Dice metric). ``target``: (N, H, W) class indices. Sums run over the
    whole batch, so tiles without foreground do not divide by zero; ``smooth`` keeps the gradient finite.
    """
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits)
        truth = target.unsqueeze(1).to(probs.dtype)
    else:
        probs = torch.softmax(logits, dim=1)[:, 1:]
        truth = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3)
    intersection = (probs * truth).sum(dims)
    dice = (2 * intersection + smooth) / (probs.sum(dims) + truth.sum(dims) + smooth)
    return 1 - dice.mean()


def segmentation_loss(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``logits`` as the net returns them: one channel for binary masks, one per class otherwise."""
    if name == "dice":
        return soft_dice_loss(logits, target)
    if logits.shape[1] == 1:
        cross_entropy = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    else:
        cross_entropy = F.cross_entropy(logits, target)
    if name == "bce":
        return cross_entropy
    if name == "bce_dice":
        return cross_entropy + soft_dice_loss(logits, target)
    raise ValueError(f"unknown segmentation loss {name!r}; expected bce, dice or bce_dice")


def l1_norm(module: nn.Module) -> torch.Tensor:
    """Sum of |w| over weight matrices and kernels (biases and batch-norm scales are not penalised)."""
    weights = [p.abs().sum() for name, p in module.named_parameters() if p.dim() >= 2 and p.requires_grad]
    return torch.stack(weights).sum() if weights else torch.zeros(())
