"""Issue 19, reproduce verdicts: each perturbation gives its verdict, names its cause and remedy, and its exit code."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from trainlab.reproduce.audit import EXACTNESS, INFO, audit
from trainlab.reproduce.compare import compare_histories
from trainlab.reproduce.confirmation import ConfigConfirmation, confirmation_table
from trainlab.reproduce.rerun import Reproduction
from trainlab.tracking.environment import capture_environment

DATA = {"train": {"sha256": "a" * 64, "samples": 1222}}
ORIGINAL = {"val/loss": [(0, 0.5), (1, 0.4)], "val/acc": [(0, 0.80), (1, 0.85)]}
DRIFTED = {"val/loss": [(0, 0.5), (1, 0.43)], "val/acc": [(0, 0.80), (1, 0.84)]}


@pytest.fixture(scope="module")
def environment():
    import lightning as L

    L.seed_everything(7, workers=True, verbose=False)
    trainer = L.Trainer(deterministic=True, logger=False, enable_checkpointing=False, accelerator="cpu", devices=1)
    env, _ = capture_environment(trainer, seed=7)
    return env


def _mismatch(recorded, now) -> str:
    before = audit({}, recorded, DATA, now, DATA)
    comparison = compare_histories(ORIGINAL, DRIFTED, 0.0)
    return Reproduction(original=None, before=before, tolerance=0.0, comparison=comparison).verdict()


def test_a_numeric_package_is_named_with_the_pip_install_that_restores_it(environment):
    now = copy.deepcopy(environment)
    recorded_torch = environment["packages"]["torch"]
    now["packages"]["torch"] = "9.9.9"
    verdict = _mismatch(environment, now)
    assert verdict.startswith("MISMATCH: curves diverge from epoch 1"), verdict
    assert f"torch {recorded_torch} -> 9.9.9 (pip install torch=={recorded_torch})" in verdict
    assert "--tolerance 0.03" in verdict  # the largest gap, 0.43 - 0.4


@pytest.mark.parametrize("package", ["mlflow", "optuna", "cmaes", "optuna-dashboard"])
def test_tracking_and_search_packages_are_no_reason(environment, package):
    recorded, now = copy.deepcopy(environment), copy.deepcopy(environment)
    recorded["all_packages"][package] = "1.0.0"
    recorded["packages"].pop(package, None)
    now["all_packages"][package] = "2.0.0"
    now["packages"].pop(package, None)
    result = audit({}, recorded, DATA, now, DATA)
    assert [d.effect for d in result.differences] == [INFO] and result.expectation == "exact"
    assert result.causes() == []
    assert "No difference found by the audit" in _mismatch(recorded, now)


def test_an_older_record_listing_mlflow_among_its_packages_is_no_reason_either(environment):
    recorded, now = copy.deepcopy(environment), copy.deepcopy(environment)
    recorded["packages"]["mlflow"], now["packages"]["mlflow"] = "2.0.0", "3.0.0"
    assert audit({}, recorded, DATA, now, DATA).expectation == "exact"


def test_a_code_commit_threads_and_world_size_are_named_with_their_remedies(environment):
    now = copy.deepcopy(environment)
    repo = dict(environment["code_repos"][0]) if environment["code_repos"] else {"name": "repo", "root": "/r"}
    recorded = copy.deepcopy(environment)
    recorded["code_repos"] = [{**repo, "commit": "a" * 40, "diff_sha256": None}]
    now["code_repos"] = [{**repo, "commit": "b" * 40, "diff_sha256": None}]
    recorded["hardware"]["torch_threads"], now["hardware"]["torch_threads"] = 4, 2
    recorded["distributed"]["world_size"], now["distributed"]["world_size"] = 2, 1
    verdict = _mismatch(recorded, now)
    assert f"git checkout {'a' * 10}" in verdict, verdict
    assert "torch threads 4 -> 2 (OMP_NUM_THREADS=4)" in verdict
    assert "world size 2 -> 1 (train on 2 processes)" in verdict


def test_no_cause_found_says_so(environment):
    verdict = _mismatch(environment, copy.deepcopy(environment))
    assert "No difference found by the audit" in verdict and "--tolerance" in verdict, verdict


def test_confirm_never_shows_an_accuracy_interval_above_one():
    confirmation = ConfigConfirmation(1, "3", "run", 0.99, seeds=[1, 2, 3], values=[0.999, 0.95, 1.0], metric="val/acc")
    assert confirmation.mean + confirmation.half_width > 1  # the t-interval itself would pass 1
    low, high = confirmation.interval
    assert high == 1.0 and 0 <= low < confirmation.mean
    row = confirmation_table([confirmation], "val/acc").text()
    assert "[" in row and all(float(x) <= 1.0 for x in re.findall(r"\[([0-9.]+), ([0-9.]+)\]", row)[0])
    loss = ConfigConfirmation(1, "3", "run", 0.1, seeds=[1, 2, 3], values=[1.5, 0.9, 2.4], metric="val/loss")
    assert loss.interval[1] == loss.mean + loss.half_width  # a loss is not a fraction: no clipping


# --- with real runs ----------------------------------------------------------------------------------------


def _train(cli, path, *overrides) -> str:
    result = cli("train", path, "trainer.max_epochs=2", *overrides)
    assert result.code == 0, result
    return re.search(r"run ([0-9a-f]{32}) FINISHED", result.out).group(1)


@pytest.mark.integration
def test_diff_exits_1_when_runs_differ_and_0_for_the_same_run(cli, fast_digits):
    a = _train(cli, fast_digits)
    b = _train(cli, fast_digits, "model.init_args.dropout=0.3")
    differ = cli("diff", a, b)
    assert differ.code == 1, differ
    assert differ.out.strip().splitlines()[-1] == "differ: config, metrics"
    same = cli("diff", a, a)
    assert same.code == 0, same
    assert same.out.strip().splitlines()[-1].startswith("same: ")


@pytest.mark.integration
def test_a_config_artifact_edited_where_no_param_shows_it_is_caught_by_its_hash(cli, fast_digits, mlflow_client):
    import yaml

    run_id = _train(cli, fast_digits)
    run = mlflow_client.get_run(run_id)
    assert len(run.data.tags["trainlab.config_sha256"]) == 64
    config_file = Path(urlparse(run.info.artifact_uri).path) / "config.yaml"
    document = yaml.safe_load(config_file.read_text())
    document["tracking"]["tags"] = {"note": "edited later"}  # the tracking section is no param
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    result = cli("reproduce", run_id, "--dry-run")
    assert result.code == 1, result
    row = next(line for line in result.out.splitlines() if "config: config.yaml" in line)
    assert "(edited)" in row and "different experiment" in row
    assert "verdict: cannot match: config.yaml was edited after the run" in result.out


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


TWEAKED = '''
import torch

from trainlab.models import MLPClassifier


class Tweaked(MLPClassifier):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.mul_(SCALE)
'''


@pytest.mark.integration
def test_a_committed_code_change_is_named_with_the_commit_to_check_out(cli, workdir, fast_digits, monkeypatch):
    """A clone whose code moved on by a commit: the re-run differs, and the verdict says `git checkout <sha>`."""
    monkeypatch.syspath_prepend(str(workdir))
    (workdir / ".gitignore").write_text("mlflow.db\nmlruns/\n*.yaml\n__pycache__/\n")
    (workdir / "tweaked.py").write_text(TWEAKED.replace("SCALE", "1.0"))
    _git(workdir, "init", "-q")
    _git(workdir, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(workdir, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    first = _git(workdir, "rev-parse", "HEAD")
    run_id = _train(cli, fast_digits, "model.class_path=tweaked.Tweaked")

    (workdir / "tweaked.py").write_text(TWEAKED.replace("SCALE", "0.5"))
    _git(workdir, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "second")
    import importlib
    import sys

    from trainlab.tracking.environment import forget_process_environment

    importlib.reload(sys.modules["tweaked"])  # this process imported the first version
    forget_process_environment()  # and read the git state once: as a new `trainlab reproduce` process would
    result = cli("reproduce", run_id)
    assert result.code == 1, result
    mismatch = next(line for line in result.out.splitlines() if line.startswith("MISMATCH"))
    assert "tweaked.py" in mismatch, mismatch
    assert f"git checkout {first[:10]}" in mismatch, mismatch


@pytest.mark.integration
def test_the_recorded_torch_thread_count_is_restored_for_the_re_run_and_said(cli, fast_digits):
    import torch

    own = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run_id = _train(cli, fast_digits)
        torch.set_num_threads(2)
        result = cli("reproduce", run_id)
        assert torch.get_num_threads() == 2, "the command puts the process's own count back"
    finally:
        torch.set_num_threads(own)
    assert result.code == 0, result
    assert "note: torch threads set to 1 as recorded (this process had 2)" in result.out
    assert "hardware: torch_threads" not in result.out  # restored: no longer a difference
    assert "MATCH: all" in result.out


@pytest.mark.integration
def test_a_config_that_no_longer_resolves_is_explained_by_the_package_that_changed(cli, fast_digits, mlflow_client):
    """A run recorded with another Lightning, whose config names a Trainer argument this Lightning lacks:
    exit 2, and the one line names the Lightning versions and the pip install that restores the run's."""
    import json

    import yaml

    run_id = _train(cli, fast_digits)
    folder = Path(urlparse(mlflow_client.get_run(run_id).info.artifact_uri).path)
    environment = json.loads((folder / "environment.json").read_text())
    environment["packages"]["lightning"] = environment["all_packages"]["lightning"] = "1.9.5"
    (folder / "environment.json").write_text(json.dumps(environment))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["trainer"]["resume_from_checkpoint"] = None  # a Trainer argument Lightning 2 removed
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("reproduce", run_id, "--dry-run")
    assert result.code == 2, result
    line = result.err.strip()
    assert line.count("\n") == 0 and "resume_from_checkpoint" in line, line
    assert "lightning 1.9.5 -> " in line and "(pip install lightning==1.9.5)" in line, line


@pytest.mark.parametrize("then, now", [
    ("git@github.com:me/proj.git", "https://github.com/me/proj"),
    ("https://github.com/me/proj.git", "https://github.com/a-fork/proj/"),
])
def test_a_commit_in_a_clone_whose_remote_is_written_differently_is_caught(environment, then, now):
    repo = {"root": "/src/proj", "branch": "main", "dirty": False, "diff_sha256": None, "diff_files": [], "untracked": []}
    recorded, current = copy.deepcopy(environment), copy.deepcopy(environment)
    recorded["code_repos"] = [{**repo, "name": then, "commit": "a" * 40}]
    current["code_repos"] = [{**repo, "name": now, "commit": "b" * 40}]
    result = audit({}, recorded, DATA, current, DATA)
    row = next(d for d in result.differences if d.aspect == "code: proj commit")
    assert row.effect == EXACTNESS and result.expectation == "statistical"
    assert f"git checkout {'a' * 10}" in _mismatch(recorded, current)


def test_an_absent_key_and_a_null_one_are_the_same_setting():
    from trainlab.reproduce.audit import config_differences

    assert config_differences({"seed_everything": None, "model": {"x": [1, 2]}}, {"model": {"x": [1, 2]}}) == []
    assert config_differences({"seed_everything": None}, {"seed_everything": 3}) == [("seed_everything", None, 3)]


@pytest.mark.integration
def test_an_unseeded_run_audits_without_a_phantom_seed_row_or_lightning_banner(cli, fast_digits):
    run_id = _train(cli, fast_digits, "seed_everything=false")
    result = cli("reproduce", run_id, "--dry-run")
    assert result.code == 0, result
    assert "config resolves differently: seed_everything" not in result.out, result.out
    assert "audit: recorded vs now: no differences" in result.out
    assert "GPU available" not in result.out + result.err and "💡" not in result.out + result.err, result.out
    assert "verdict: only statistical reproduction expected: recorded as statistical (no seed" in result.out


def test_a_package_shadowed_by_a_folder_on_the_path_is_recorded_as_such(tmp_path):
    """A ``scipy/`` folder in the working directory is what `import scipy` runs: recorded, not the installed version."""
    import sys

    (tmp_path / "scipy").mkdir()
    (tmp_path / "scipy" / "__init__.py").write_text("__version__ = 'local'\n")
    script = "import json; from trainlab.tracking.environment import capture_environment; print(json.dumps(capture_environment(None)[0]['packages']))"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    import json

    packages = json.loads(out.stdout.strip().splitlines()[-1])
    assert packages["scipy"].endswith(f"shadowed by {(tmp_path / 'scipy').resolve()}"), packages
    assert "shadowed" not in packages["torch"] and "shadowed" not in packages["trainlab"], packages


CSV_DATAMODULE = """
import numpy as np
import torch

from trainlab.datamodules import InMemoryDataModule


class CsvDigits(InMemoryDataModule):
    def __init__(self, path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = path

    def load_splits(self):
        table = np.loadtxt(self.path, delimiter=",", dtype=np.float32)
        x, y = torch.from_numpy(table[:, :-1]), torch.from_numpy(table[:, -1]).long()
        train, test = self._carve((x, y), 0.2)
        return {"train": train, "test": test}
"""


@pytest.mark.integration
def test_a_relative_data_path_reproduces_from_another_working_directory(cli, workdir, fast_digits, tracking_uri, monkeypatch, tmp_path_factory):
    import numpy as np
    from sklearn.datasets import load_digits

    monkeypatch.syspath_prepend(str(workdir))
    (workdir / "csv_rel_digits.py").write_text(CSV_DATAMODULE)
    digits = load_digits()
    np.savetxt(workdir / "digits.csv", np.column_stack([digits.data, digits.target]), delimiter=",", fmt="%g")
    run_id = _train(cli, fast_digits, "data.class_path=csv_rel_digits.CsvDigits", "data.init_args={path: digits.csv, batch_size: 64}")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = cli("reproduce", run_id, "--tracking-uri", tracking_uri)
    assert result.code == 0, result
    assert f"note: data.init_args.path relative to the run's working directory: re-running from {workdir}" in result.out
    assert "MATCH: all" in result.out
    assert Path.cwd() == elsewhere


def test_a_statistical_verdict_says_it_rests_on_one_re_run(environment):
    from trainlab.reproduce.rerun import STATISTICAL_TOLERANCE

    before = audit({}, environment, DATA, copy.deepcopy(environment), DATA)
    close = compare_histories(ORIGINAL, ORIGINAL, STATISTICAL_TOLERANCE)
    verdict = Reproduction(original=None, before=before, tolerance=STATISTICAL_TOLERANCE, comparison=close).verdict()
    assert verdict.startswith("MATCH: ") and "one re-run against the default tolerance 0.02" in verdict
    given = Reproduction(original=None, before=before, tolerance=STATISTICAL_TOLERANCE, comparison=close, tolerance_given=True)
    assert "one re-run" not in given.verdict()
