"""SLURM as a launcher: study workers submitted as one job array through ``submitit``.

SLURM places the workers, ``submitit`` (the library Hydra's SLURM launcher uses) writes and submits the
sbatch script and runs a Python function in each array task; the workers are the same
:func:`~trainlab.studies.worker.run_worker` that ``trainlab study --jobs N`` runs locally, sharing the
study storage and the tracking URI. Nothing here schedules or talks to workers::

    trainlab study studies/digits_mlp.yaml --launcher slurm --jobs 4 --wait launcher.slurm.partition=cpu
"""

from trainlab.slurm.settings import SlurmSettings, slurm_settings
from trainlab.slurm.submit import require_sbatch, submit_workers

__all__ = ["SlurmSettings", "slurm_settings", "require_sbatch", "submit_workers"]
