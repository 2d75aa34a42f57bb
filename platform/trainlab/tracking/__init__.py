"""MLflow tracking: where runs are stored, how metrics and artifacts get there, how runs end."""
