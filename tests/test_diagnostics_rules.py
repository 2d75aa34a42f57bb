"""The diagnostics section and the stated rules behind each verdict (no training: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import STUDIES, all_runs
from trainlab.config import load_experiment, resolve_run_config
from trainlab.diagnostics import diagnostic_callbacks
from trainlab.diagnostics.gradient_flow import gradient_verdict
from trainlab.diagnostics.loss_trend import loss_trend_warning
from trainlab.diagnostics.overfitting import find_overfit_epoch


def _model(path: str = "digits_mlp.yaml", *overrides: str):
    from trainlab.training import build

    config = resolve_run_config(load_experiment(STUDIES / path, list(overrides)).run)
    config = build.with_data_facts(config, build.build_datamodule(config))
    return config, build.build_model(config)


def _names(callbacks) -> list[str]:
    return [type(c).__name__ for c in callbacks]


# -- the experiment file's section -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("diagnostics.gradient_flow.vanishing_ratio=2", "diagnostics.gradient_flow.vanishing_ratio", "expected a number in [0, 1)"),
        ("diagnostics.overfitting.patience=0", "diagnostics.overfitting.patience", "expected an integer > 0"),
        ("diagnostics.gradient_flow.vanishing=0.1", "diagnostics.gradient_flow.vanishing", "expected a key that diagnostics accepts"),
        ("diagnostics.gradient_flow=3", "diagnostics.gradient_flow", "expected a mapping of settings"),
        ("diagnostics.conv_filters=maybe", "diagnostics.conv_filters", "expected a bool"),
    ],
)
def test_bad_diagnostics_settings_are_one_line_errors_and_create_nothing(cli, workdir, fast_digits, tracking_uri, override, key, expected):
    result = cli("train", fast_digits, override)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainlab: error: {key}:") and expected in lines[0], lines
    assert not (workdir / "mlflow.db").exists() or all_runs(tracking_uri) == []


def test_resolved_config_states_every_threshold():
    document = resolve_run_config(load_experiment(STUDIES / "digits_mlp.yaml", ["diagnostics.gradient_flow.vanishing_ratio=0.0001"]).run).document
    section = document["diagnostics"]
    assert section["gradient_flow"] == {"enabled": True, "vanishing_ratio": 0.0001, "exploding_norm": 100.0, "per_step": False}
    assert section["overfitting"]["patience"] == 2 and section["loss_trend"]["diverging_step_factor"] == 10.0
    assert section["activation_histograms"] is False


def test_cheap_diagnostics_are_on_by_default_and_chosen_by_model():
    config, mlp = _model()
    assert _names(diagnostic_callbacks(config.document["diagnostics"], mlp)) == [
        "NonFiniteGuard",
        "GradientFlowMonitor",
        "OverfittingDetector",
        "LossTrendMonitor",
        "ConfusionMatrixReport",
    ]
    # A run that skips its test (every study trial) has no test-set callback to dispatch to on each step.
    assert "ConfusionMatrixReport" not in _names(diagnostic_callbacks(config.document["diagnostics"], mlp, tested=False))
    config, cnn = _model("digits_mlp.yaml", "model.class_path=CNNClassifier", "model.init_args={channels: [4]}")
    assert "ConvFilterGrid" in _names(diagnostic_callbacks(config.document["diagnostics"], cnn))


def test_diagnostics_switch_off_all_at_once_or_one_by_one():
    config, mlp = _model("digits_mlp.yaml", "diagnostics.enabled=false")
    assert diagnostic_callbacks(config.document["diagnostics"], mlp) == []
    config, mlp = _model("digits_mlp.yaml", "diagnostics.gradient_flow=false", "diagnostics.activation_histograms=true")
    names = _names(diagnostic_callbacks(config.document["diagnostics"], mlp))
    assert "GradientFlowMonitor" not in names and "ActivationHistograms" in names


# -- the rules ---------------------------------------------------------------------------------------


def test_gradient_verdict_thresholds():
    healthy = np.array([[0.5, 0.8, 1.0], [0.4, 0.7, 0.9]])
    assert gradient_verdict(healthy, 1e-3, 100.0).verdict == "healthy"
    shrinking = np.array([[1e-7, 1e-4, 1.0], [2e-7, 1e-4, 0.8]])
    verdict = gradient_verdict(shrinking, 1e-3, 100.0)
    assert (verdict.verdict, verdict.layers) == ("vanishing", [0, 1])
    assert gradient_verdict(shrinking, 1e-5, 100.0).layers == [0]
    assert gradient_verdict(shrinking, 0.0, 100.0).verdict == "healthy"  # 0 switches the check off
    blowing_up = np.array([[1.0, 2.0, 3.0], [50.0, 400.0, 3.0]])
    verdict = gradient_verdict(blowing_up, 1e-3, 100.0)
    assert (verdict.verdict, verdict.layers) == ("exploding", [1])
    unused_layer = np.array([[0.0, 0.5, 1.0]])  # never got a gradient: not counted as vanishing
    assert gradient_verdict(unused_layer, 1e-3, 100.0).verdict == "healthy"


def test_overfit_epoch_rule():
    train = {e: 2.0 / (e + 1) for e in range(8)}
    val = dict(enumerate([1.5, 1.0, 0.7, 0.6, 0.65, 0.7, 0.8, 0.9]))
    assert find_overfit_epoch(train, val, patience=2, min_val_rise=0.05) == 3
    assert find_overfit_epoch(train, val, patience=5, min_val_rise=0.05) is None  # only 4 epochs after it
    improving = dict(enumerate([1.5, 1.0, 0.7, 0.6, 0.55, 0.5, 0.48, 0.47]))
    assert find_overfit_epoch(train, improving) is None
    flat_train = {e: 1.0 for e in range(8)}  # validation rose, but training did not keep falling
    assert find_overfit_epoch(flat_train, val) is None
    tiny_rise = dict(enumerate([1.5, 1.0, 0.7, 0.6, 0.61, 0.6, 0.61, 0.6]))
    assert find_overfit_epoch(train, tiny_rise, min_val_rise=0.05) is None


def test_loss_trend_rule():
    assert loss_trend_warning([2.3, 1.2, 0.8, 0.6, 0.5, 0.45], 2.3, 2.4) is None
    assert loss_trend_warning([2.3, 1.2, 0.8, 0.6, 0.5, float("nan")]) == "diverging"
    # A blow-up early in the run that the epoch means hide once the net sticks at chance level.
    assert loss_trend_warning([45.5, 3.5, 2.4, 2.32, 2.36, 2.33], first_step_loss=2.28, max_step_loss=311.9) == "diverging"
    assert loss_trend_warning([1.0, 1.2, 1.6, 2.0]) == "diverging"  # ends 100% above where it started
    assert loss_trend_warning([2.0, 1.0, 1.6, 0.9, 1.5, 0.8, 1.4]) == "oscillating"
    # The small wobbles of a converged run, or of a deep sigmoid net stuck at chance level, are not swings.
    assert loss_trend_warning([2.0, 0.5, 0.1, 0.011, 0.010, 0.012, 0.009, 0.011]) is None
    assert loss_trend_warning([2.336, 2.362, 2.319, 2.339, 2.344, 2.326, 2.305, 2.314, 2.32, 2.31]) is None
    assert loss_trend_warning([2.0, 1.0, 1.6, 0.9], min_epochs=5) is None


def test_learning_curves_mark_the_overfit_epoch_and_show_the_learning_rate():
    from trainlab.tracking.plots import learning_curves_figure

    history = {
        "train/loss": [(e, 1.0 / (e + 1)) for e in range(6)],
        "val/loss": [(e, v) for e, v in enumerate([1.0, 0.7, 0.6, 0.7, 0.8, 0.9])],
        "optim/lr": [(e, 0.01 * 0.5**e) for e in range(6)],
        "optim/momentum": [(e, 0.9) for e in range(6)],
        "overfit_epoch": [(6, 2.0)],
    }
    figure = learning_curves_figure(history, ("loss",))
    loss_panel, optimiser_panel = figure.axes[:2]
    marks = [line for line in loss_panel.lines if "overfitting" in line.get_label()]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [2, 2]
    assert "overfitting from epoch 2" in [text.get_text() for text in loss_panel.get_legend().get_texts()]
    assert list(optimiser_panel.lines[0].get_ydata()) == pytest.approx([0.01 * 0.5**e for e in range(6)])
    assert any(list(line.get_ydata()) == [0.9] * 6 for axes in figure.axes for line in axes.lines)
