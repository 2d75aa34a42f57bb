"""Constrained argument types for model and datamodule signatures.

jsonargparse checks them while it parses an experiment file, so a bad value is reported with its key path
(``model.init_args.dropout``) before any run exists. Each constraint is registered once, here: jsonargparse
refuses two names for the same restriction.
"""

from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, restricted_number_type

# Dropout rates, label smoothing, held-out fractions: 0 <= value < 1.
UnitFraction = restricted_number_type("UnitFraction", float, [(">=", 0.0), ("<", 1.0)])

__all__ = ["NonNegativeFloat", "NonNegativeInt", "PositiveFloat", "PositiveInt", "UnitFraction"]
