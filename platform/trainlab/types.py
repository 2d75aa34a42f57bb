"""Constrained argument types for model and datamodule signatures.

jsonargparse checks them while it parses an experiment file, so a bad value is reported with its key path
(``model.init_args.dropout``) before any run exists. Each constraint is registered once, here: jsonargparse
refuses two names for the same restriction.
"""

from jsonargparse.typing import NonNegativeFloat, OpenUnitInterval, NonNegativeInt, PositiveFloat, PositiveInt, restricted_number_type

# Dropout rates, label smoothing, held-out fractions: 0 <= value < 1.
UnitFraction = restricted_number_type("UnitFraction", float, [(">=", 0.0), ("<", 1.0)])
# Held-out test splits: 0 < value < 1. Every run tests; an empty test split is refused before a run exists.
# (val_fraction stays a UnitFraction: 0 is right for a run that does not validate, as --refit-best.)
HeldOutFraction = OpenUnitInterval  # jsonargparse registers (0, 1) under this name already

__all__ = ["HeldOutFraction", "NonNegativeFloat", "NonNegativeInt", "PositiveFloat", "PositiveInt", "UnitFraction"]
