"""Importing the optional packages that ship data sets (the ``data`` extra), with an error that says how to get them."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install -e '.[data]' (or make setup)"


class MissingDataPackage(ImportError, ValueError):
    """A data set's package is not installed. A ValueError too, so the run builder reports it as bad data input."""


def import_data_package(module: str, dataset: str) -> ModuleType:
    """``import_data_package("sktime.datasets", "JapaneseVowels")``: the module, or a one-line reason why not."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise MissingDataPackage(
            f"{dataset} comes with the package '{package}', which is not installed ({exc}); "
            f"install the data extra: {INSTALL_HINT}"
        ) from None
