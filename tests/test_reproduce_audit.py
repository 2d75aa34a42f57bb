"""The pieces behind `trainlab reproduce`, without training: exactness labels, audit verdicts, curve comparison, intervals."""

from __future__ import annotations

import copy
import math

import pytest

from trainlab.reproduce.audit import EXACTNESS, INFO, SAME_EXPERIMENT, audit
from trainlab.reproduce.compare import compare_histories
from trainlab.reproduce.confirmation import ConfigConfirmation, check_ranking, t_half_width
from trainlab.tracking.environment import capture_environment, reproducibility

DATA = {"train": {"sha256": "a" * 64, "samples": 1222}, "val": {"sha256": "b" * 64, "samples": 216}}


@pytest.fixture(scope="module")
def environment():
    """This machine's environment as a seeded, deterministic CPU run records it."""
    import lightning as L

    L.seed_everything(7, workers=True, verbose=False)  # as fit_run seeds every run
    trainer = L.Trainer(deterministic=True, logger=False, enable_checkpointing=False, accelerator="cpu", devices=1)
    env, _ = capture_environment(trainer, seed=7)
    return env


def test_a_second_run_in_the_process_records_the_same_environment_with_its_own_run_facts(environment):
    """Packages, hardware and git state are read once per process; seed, threads and determinism per run."""
    import torch

    from trainlab.tracking.environment import forget_process_environment

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again, _ = capture_environment(None, seed=8)
        again["all_packages"]["torch"] = "edited by a caller"
        again["git"]["commit"] = "edited by a caller"
        forget_process_environment()
        fresh, _ = capture_environment(None, seed=8)
    finally:
        torch.set_num_threads(threads)
    assert again["seed"] == fresh["seed"] == 8 and again["hardware"]["torch_threads"] == 1
    assert again["distributed"] == {"world_size": 1} and again["determinism"]["precision"] is None
    # What the process keeps is copied into each run's record: a caller's edit does not reach the next run.
    reused, _ = capture_environment(None, seed=8)
    assert reused["all_packages"] == fresh["all_packages"] == environment["all_packages"]
    assert reused["git"] == fresh["git"] == environment["git"] and reused["code_repos"] == environment["code_repos"]
    assert list(reused["hardware"]) == list(environment["hardware"])  # same keys, in the recorded order
    assert {k: v for k, v in reused["hardware"].items() if k != "torch_threads"} == {
        k: v for k, v in environment["hardware"].items() if k != "torch_threads"
    }


def test_seeded_deterministic_cpu_run_is_exact(environment):
    assert environment["reproducibility"] == {"label": "exact", "reasons": []}
    assert environment["seed"] == 7
    assert environment["determinism"]["deterministic_algorithms"] is True
    assert environment["distributed"]["world_size"] == 1
    assert environment["packages"]["torch"] and environment["all_packages"]["torch"]


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda e: e.update(seed=None), "no seed"),
        (lambda e: e["determinism"].update(deterministic_algorithms=False), "deterministic algorithms off"),
        (lambda e: _on_gpu(e, deterministic_warn_only=True), "only warn"),
        (lambda e: _on_gpu(e, cudnn_benchmark=True), "cuDNN benchmark on"),
        (lambda e: _on_gpu(e, CUBLAS_WORKSPACE_CONFIG=None), "CUBLAS_WORKSPACE_CONFIG unset"),
    ],
)
def test_what_makes_a_run_statistical(environment, change, reason):
    env = copy.deepcopy(environment)
    change(env)
    label, reasons = reproducibility(env)
    assert label == "statistical"
    assert any(reason in r for r in reasons), reasons


def _on_gpu(env, **determinism):
    env["hardware"]["gpus"] = ["NVIDIA H100"]
    env["distributed"]["accelerator"] = "CUDAAccelerator"
    env["determinism"].update(deterministic_warn_only=False, cudnn_benchmark=False, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    env["determinism"].update(determinism)


def test_unchanged_environment_expects_exact_reproduction(environment):
    result = audit({}, environment, DATA, copy.deepcopy(environment), copy.deepcopy(DATA))
    assert result.differences == [] and result.expectation == "exact"
    assert result.verdict().startswith("exact reproduction expected")


def test_numeric_package_change_breaks_exactness_other_packages_do_not(environment):
    now = copy.deepcopy(environment)
    now["all_packages"]["some-cli-helper"] = "1.0"
    only_info = audit({}, environment, DATA, now, DATA)
    assert [d.effect for d in only_info.differences] == [INFO] and only_info.expectation == "exact"

    now["packages"]["torch"] = "9.9.9"
    result = audit({}, environment, DATA, now, DATA)
    torch_row = next(d for d in result.differences if d.aspect == "packages: torch")
    assert torch_row.effect == EXACTNESS and torch_row.now == "9.9.9"
    assert result.expectation == "statistical" and "packages changed" in result.verdict()


def test_hardware_world_size_and_determinism_changes_are_named(environment):
    now = copy.deepcopy(environment)
    now["hardware"]["torch_threads"] = 64
    now["distributed"]["world_size"] = 2
    now["determinism"]["precision"] = "bf16-mixed"
    aspects = {d.aspect for d in audit({}, environment, DATA, now, DATA).differences}
    assert {"hardware: torch_threads", "distributed: world_size", "determinism: precision"} <= aspects


def test_changed_data_and_edited_config_mean_a_different_experiment(environment):
    changed = copy.deepcopy(DATA)
    changed["train"]["sha256"] = "c" * 64
    result = audit({}, environment, DATA, environment, changed, config_edits=[("optimizer.init_args.lr", "0.002", "0.01")])
    assert [(d.aspect, d.effect) for d in result.blocking] == [("config: optimizer.init_args.lr", SAME_EXPERIMENT), ("data: train", SAME_EXPERIMENT)]
    assert result.verdict() == "cannot match: config.yaml was edited after the run; the data differ from what the run used"


def test_curve_comparison_finds_the_first_divergent_epoch():
    original = {"val/loss": [(0, 1.0), (1, 0.5), (2, 0.25)], "test/acc": [(3, 0.9)]}
    tiny = {"val/loss": [(0, 1.0), (1, 0.5), (2, 0.25 + 1e-9)], "test/acc": [(3, 0.9)]}
    exact = compare_histories(original, tiny, 0.0)
    assert not exact.matches and exact.first_divergence() == (2, ["val/loss"])
    assert compare_histories(original, tiny, 1e-6).matches

    shorter = {"val/loss": [(0, 1.0), (1, 0.5)], "test/acc": [(3, 0.9)]}
    assert not compare_histories(original, shorter, 0.1).matches  # a lost epoch is never within tolerance
    extra = {**original, "val/f1": [(0, 0.3)]}
    assert compare_histories(original, extra, 0.0).matches  # a metric only the re-run logs is no mismatch
    nan = {"val/loss": [(0, math.nan)]}
    assert compare_histories(nan, copy.deepcopy(nan), 0.0).identical


def test_t_interval_and_ranking_check():
    assert t_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert t_half_width([1.0]) == math.inf
    first = ConfigConfirmation(1, "4", "r4", 0.96, seeds=[1, 2, 3], values=[0.90, 0.905, 0.91])
    second = ConfigConfirmation(2, "7", "r7", 0.95, seeds=[1, 2, 3], values=[0.95, 0.955, 0.96])
    check = check_ranking([first, second], "maximize")
    assert not check.holds and check.best_trial == "7" and check.separated is True
    assert check_ranking([first, second], "minimize").holds
