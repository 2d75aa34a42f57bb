"""The one training path, in the order a run goes through it:

1. :func:`launch` (``launch.py``): here, or as a process group of its own (``group_member.py``);
2. :func:`prepare_run` (``prepare.py``): seed, data, model, trainer, checkpoint;
3. :func:`fit_run` (``fit_run.py``): prepare → fit → test → record;
4. ``record.py``: the MLflow run, its inputs and outputs (rank 0).

``trainlab train``, every study trial, ``trainlab reproduce``, ``trainlab confirm`` and a study's refit call
:func:`launch`; there is no second path.
"""

from trainlab.training.fit_run import RunEnded, RunResult, fit_run
from trainlab.training.launch import Role, launch
from trainlab.training.prepare import PreparedRun, prepare_run

__all__ = ["PreparedRun", "Role", "RunEnded", "RunResult", "fit_run", "launch", "prepare_run"]
