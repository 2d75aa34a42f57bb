"""`tracking.system_metrics: true` records MLflow's system/* curves on the run; without it a run has none."""

from __future__ import annotations

import pytest
import yaml

from conftest import all_runs

pytestmark = pytest.mark.integration


def test_system_metrics_are_recorded_only_when_asked(cli, fast_digits, tracking_uri):
    document = yaml.safe_load(fast_digits.read_text())
    document["trainer"]["max_epochs"] = 1
    fast_digits.write_text(yaml.safe_dump(document))

    assert cli("train", fast_digits, "tracking.run_name=plain").code == 0
    watched = cli("train", fast_digits, "tracking.run_name=watched", "tracking.system_metrics=true")
    assert watched.code == 0, watched

    runs = {run.info.run_name: run for run in all_runs(tracking_uri)}
    system = {name: sorted(k for k in run.data.metrics if k.startswith("system/")) for name, run in runs.items()}
    assert system["plain"] == []
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(system["watched"]), system
    assert runs["watched"].info.status == "FINISHED"


def test_a_bad_system_metrics_value_is_one_line_and_records_nothing(cli, fast_digits, workdir):
    result = cli("train", fast_digits, "tracking.system_metrics=maybe")
    assert result.code == 2
    assert result.err.strip() == "trainlab: error: tracking.system_metrics: got 'maybe'; expected a bool", result
    assert not (workdir / "mlflow.db").exists()
