"""The per-layer parameter table every run logs as ``model/parameters.csv``.

Lightning's ModelSummary counts parameters per module but prints no shapes; a course counts
(784 + 1) × 1000 for a 784→1000 layer by hand, so the table shows each layer's tensors and their product.
"""

from __future__ import annotations

import csv
import io

from torch import nn


def parameter_table(model: nn.Module) -> str:
    """CSV with one row per module that holds parameters itself, then a ``total`` row.

    Columns: ``layer`` (the module's dotted name), ``type``, ``shapes`` (``weight 1000x784; bias 1000``),
    ``params`` and ``trainable``.

    Example::

        parameter_table(nn.Sequential(nn.Linear(784, 1000)))
        # layer,type,shapes,params,trainable
        # 0,Linear,weight 1000x784; bias 1000,785000,785000
        # total,,,785000,785000
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["layer", "type", "shapes", "params", "trainable"])
    total = trainable = 0
    for name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not own:
            continue
        shapes = "; ".join(f"{pname} {'x'.join(map(str, p.shape))}" for pname, p in own)
        count = sum(p.numel() for _, p in own)
        count_trainable = sum(p.numel() for _, p in own if p.requires_grad)
        writer.writerow([name or "(root)", type(module).__name__, shapes, count, count_trainable])
        total += count
        trainable += count_trainable
    writer.writerow(["total", "", "", total, trainable])
    return buffer.getvalue()
