"""The one training path: :func:`fit_run` turns a resolved run config into a tracked, trained, tested run.

``trainlab train``, every study trial and ``trainlab reproduce`` call it; there is no second path.
"""

from trainlab.training.fit_run import RunResult, fit_run

__all__ = ["RunResult", "fit_run"]
