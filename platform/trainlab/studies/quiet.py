"""A study's output is a line per trial and a line per trial epoch; Lightning's per-run banners would bury them."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_for_studies() -> None:
    """Quiet Lightning and Optuna for a study worker and its trials' process groups."""
    import optuna

    from trainlab.training.quiet import quiet_lightning

    quiet_lightning()
    # Trials switch optimizers; LearningRateMonitor's note that one has no momentum is expected there.
    warnings.filterwarnings("ignore", message=r".*log_momentum=True, but some optimizers do not have momentum.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
