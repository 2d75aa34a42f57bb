"""Forecasting from a real time series: sliding windows and chronological train/val/test splits."""

from __future__ import annotations

from typing import Literal

import torch

from trainlab.datamodules.data_packages import import_data_package
from trainlab.datamodules.in_memory import InMemoryDataModule, Split
from trainlab.types import HeldOutFraction, PositiveInt


class SeriesWindows(InMemoryDataModule):
    """Samples are (the last ``window`` values, the next ``horizon`` values) of one series; subclasses give the series.

    Splits are chronological, never shuffled across time: the last ``test_fraction`` of the time steps
    hold the test targets, the ``val_fraction`` before them the validation targets, the rest the training
    targets. A window's inputs may reach back into an earlier split (that is the past, known at forecast
    time); its targets never straddle two splits, so no value is both trained on and tested against.

    Splits are ``(x, y)``: ``x`` ``(N, window, 1)``, normalised with training statistics; ``y``
    ``(N, horizon)`` in the series' own units (the model rescales; see ``models.regression``).
    """

    def __init__(
        self,
        window: PositiveInt = 24,
        horizon: PositiveInt = 1,
        test_fraction: HeldOutFraction = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.window = window
        self.horizon = horizon
        self.test_fraction = test_fraction

    def load_series(self) -> torch.Tensor:
        """The whole series, oldest first, as a 1-D float tensor."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, Split]:
        series = self.load_series().float()
        length = len(series)
        test_start = length - int(round(length * self.test_fraction))
        val_start = test_start - int(round(length * self.val_fraction))
        bounds = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, length)}
        splits = {}
        for name, (start, end) in bounds.items():
            # First target index t: window of inputs [t - window, t), targets [t, t + horizon) inside [start, end).
            firsts = range(max(start, self.window), end - self.horizon + 1)
            if len(firsts) == 0:
                raise ValueError(
                    f"the {name} split has no (window={self.window}, horizon={self.horizon}) sample in a series of "
                    f"{length} values; use a shorter window or horizon, or larger fractions"
                )
            x = torch.stack([series[t - self.window : t] for t in firsts]).unsqueeze(-1)
            y = torch.stack([series[t : t + self.horizon] for t in firsts])
            splits[name] = (x, y)
        return splits


class StatsmodelsSeries(SeriesWindows):
    """A series that statsmodels ships (no download; the ``data`` extra installs statsmodels).

    - ``sunspots``: yearly sunspot numbers 1700–2008 (309 values)
    - ``co2``: weekly Mauna Loa CO₂ in ppm, 1958–2001 (2,284 values; 59 gaps filled by linear interpolation)
    - ``nile``: yearly Nile flow at Aswan 1871–1970 (100 values)
    - ``elnino``: monthly Pacific sea-surface temperature 1950–2010 (732 values)

    Example::

        data:
          class_path: StatsmodelsSeries
          init_args: {dataset: sunspots, window: 24, horizon: 1}
    """

    def __init__(self, dataset: Literal["sunspots", "co2", "nile", "elnino"] = "sunspots", **kwargs) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset

    def load_series(self) -> torch.Tensor:
        datasets = import_data_package("statsmodels.datasets", f"the {self.dataset} series")
        frame = getattr(datasets, self.dataset).load_pandas().data
        if self.dataset == "sunspots":
            values = frame["SUNACTIVITY"]
        elif self.dataset == "co2":
            values = frame["co2"].interpolate()
        elif self.dataset == "nile":
            values = frame["volume"]
        else:  # elnino: one row per year, one column per month
            values = frame.drop(columns="YEAR").stack()
        return torch.tensor(values.to_numpy(dtype="float32"))
