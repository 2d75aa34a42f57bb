"""Tabular data: scikit-learn's shipped sets (wine, breast cancer, diabetes) and the user's own CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import torch

from trainlab.datamodules.in_memory import InMemoryDataModule, Split
from trainlab.types import HeldOutFraction


class _HeldOutTest(InMemoryDataModule):
    """A table with no official test split: ``test_fraction`` of the rows is held out by ``split_seed``."""

    def __init__(self, test_fraction: HeldOutFraction = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = test_fraction

    def load_table(self) -> Split:
        raise NotImplementedError

    def load_splits(self) -> dict[str, Split]:
        train, test = self._carve(self.load_table(), self.test_fraction)
        return {"train": train, "test": test}


class _SklearnTable(_HeldOutTest):
    loader: str = ""

    def load_table(self) -> Split:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, self.loader)()
        x = torch.tensor(bunch.data, dtype=torch.float32)
        y = torch.tensor(bunch.target)
        return x, (y.long() if self.task == "classification" else y.float())


class Wine(_SklearnTable):
    """178 Italian wines, 13 chemical measurements, 3 cultivars (classification).

    Example::

        data: {class_path: Wine, init_args: {batch_size: 32}}
    """

    loader = "load_wine"


class BreastCancer(_SklearnTable):
    """569 breast-mass biopsies (Wisconsin), 30 features, malignant (0) vs benign (1): 212 vs 357, imbalanced.

    Example::

        data: {class_path: BreastCancer, init_args: {balanced: true}}
    """

    loader = "load_breast_cancer"


class Diabetes(_SklearnTable):
    """442 diabetes patients, 10 baseline measurements, disease progression a year later (regression, 25–346).

    Example::

        data: {class_path: Diabetes, init_args: {batch_size: 32}}
    """

    loader = "load_diabetes"
    task = "regression"


class CSVDataModule(_HeldOutTest):
    """A CSV file with a header row: one ``target`` column, ``features`` columns (default: all the others).

    ``task: auto`` treats a floating-point target as regression and anything else (strings, integers) as
    class labels, numbered in sorted order (``class_names`` keeps the mapping). Non-numeric feature
    columns are one-hot encoded with ``categorical: onehot`` or refused with ``categorical: error``.
    Missing values are refused, naming the columns.

    Example::

        data:
          class_path: CSVDataModule
          init_args: {path: penguins.csv, target: species, features: [bill_length_mm, island], categorical: onehot}
    """

    def __init__(
        self,
        path: str,
        target: str,
        features: Optional[list[str]] = None,
        task: Literal["auto", "classification", "regression"] = "auto",
        categorical: Literal["onehot", "error"] = "onehot",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.path = Path(path).expanduser()
        self.target = target
        self.features = features
        self.task_setting = task
        self.categorical = categorical
        self.class_names: list[str] | None = None

    def load_table(self) -> Split:
        import pandas as pd

        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such CSV file")
        frame = pd.read_csv(self.path)
        features = self.features if self.features is not None else [c for c in frame.columns if c != self.target]
        missing = [c for c in [self.target, *features] if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.path.name} has no column(s) {missing}; its columns are {list(frame.columns)}")
        if self.target in features:
            raise ValueError(f"the target column {self.target!r} is also listed as a feature")
        with_gaps = [c for c in [self.target, *features] if frame[c].isna().any()]
        if with_gaps:
            raise ValueError(f"missing values in column(s) {with_gaps}; fill or drop them first")
        table = frame[features]
        text_columns = [c for c in features if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])]
        if text_columns and self.categorical == "error":
            raise ValueError(f"non-numeric feature column(s) {text_columns}; encode them or set categorical: onehot")
        if text_columns:
            table = pd.get_dummies(table, columns=text_columns, dtype="float32")
        x = torch.tensor(table.to_numpy(dtype="float32"))
        column = frame[self.target]
        is_regression = self.task_setting == "regression" or (self.task_setting == "auto" and pd.api.types.is_float_dtype(column))
        if is_regression:
            if not pd.api.types.is_numeric_dtype(column):
                raise ValueError(f"regression needs a numeric target; column {self.target!r} holds {column.dtype} values")
            self.task = "regression"
            return x, torch.tensor(column.to_numpy(dtype="float32"))
        self.task = "classification"
        names = sorted(column.unique().tolist(), key=str)
        if len(names) < 2:
            raise ValueError(f"the target column {self.target!r} has a single value; classification needs at least two")
        self.class_names = [str(name) for name in names]
        index = {name: i for i, name in enumerate(names)}
        return x, torch.tensor([index[value] for value in column], dtype=torch.long)
