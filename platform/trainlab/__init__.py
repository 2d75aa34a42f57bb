"""trainlab: tracked Lightning runs, Optuna studies and verified reproduction.

Kept import-light on purpose: ``trainlab --help`` must answer without importing torch or mlflow.
"""

__version__ = "0.1.0"
