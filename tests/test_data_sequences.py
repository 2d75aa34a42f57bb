"""Sequence data: JapaneseVowels (variable length, from sktime), digits row by row, and forecasting windows
with chronological splits (statsmodels' sunspots). Also: a missing data package is a clear one-line error."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml

from conftest import need
from trainlab.datamodules import DigitsSequence, JapaneseVowels, StatsmodelsSeries
from trainlab.datamodules.data_packages import MissingDataPackage, import_data_package


def _need(package: str) -> None:
    need(importlib.util.find_spec(package) is not None, f"{package} is not installed (pip install -e '.[data]')")


def test_japanese_vowels_is_variable_length_with_12_channels_and_9_speakers():
    _need("sktime")
    data = JapaneseVowels(val_fraction=0.1)
    facts = data.describe()
    splits = data.splits

    assert facts == {"input_shape": [29, 12], "num_classes": 9}
    assert len(splits["train"][2]) + len(splits["val"][2]) == 270 and len(splits["test"][2]) == 370
    lengths = torch.cat([splits[s][1] for s in splits])
    assert lengths.min() == 7 and lengths.max() == 29
    assert set(splits["test"][2].tolist()) == set(range(9))
    x, lengths, _ = splits["train"]
    valid = torch.arange(29) < lengths[:, None]
    assert x[~valid].abs().sum() == 0, "padding stays zero after normalisation"
    steps = x[valid]  # normalised per channel over the real steps
    assert torch.allclose(steps.mean(0), torch.zeros(12), atol=1e-4)
    assert torch.allclose(steps.std(0), torch.ones(12), atol=1e-3)

    xb, lb, yb = next(iter(data.train_dataloader()))
    assert xb.shape[1:] == (29, 12) and lb.shape == yb.shape == (xb.shape[0],)


def test_digits_as_sequences_of_rows():
    data = DigitsSequence()
    assert data.describe() == {"input_shape": [8, 8], "num_classes": 10}
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (64, 8, 8) and y.shape == (64,)


def test_forecasting_windows_are_chronological_and_never_share_targets():
    _need("statsmodels")
    window, horizon = 10, 3
    raw = StatsmodelsSeries(dataset="sunspots", window=window, horizon=horizon, normalize=False)
    import statsmodels.datasets

    series = torch.tensor(statsmodels.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(), dtype=torch.float32)
    splits = raw._loaded()

    # Locate every sample's first target in the series: targets follow their inputs directly.
    firsts = {}
    for name, (x, y) in splits.items():
        assert x.shape[1:] == (window, 1) and y.shape[1] == horizon
        starts = []
        for xi, yi in zip(x[:, :, 0], y):
            t = next(t for t in range(window, len(series) - horizon + 1) if torch.equal(series[t - window : t], xi))
            assert torch.equal(series[t : t + horizon], yi)
            starts.append(t)
        firsts[name] = starts
    # Chronological: train targets, then validation targets, then test targets; none in two splits.
    assert max(firsts["train"]) + horizon <= min(firsts["val"])
    assert max(firsts["val"]) + horizon <= min(firsts["test"])
    assert max(firsts["test"]) + horizon == len(series)
    test_years = len(series) - min(firsts["test"])
    assert test_years == round(0.2 * len(series))

    facts = StatsmodelsSeries(dataset="sunspots", window=window, horizon=horizon).describe()
    assert facts["input_shape"] == [window, 1] and facts["num_outputs"] == horizon
    assert facts["target_mean"] == pytest.approx(splits["train"][1].mean().item(), rel=1e-5)


def test_forecasting_window_too_long_for_the_series_is_refused():
    _need("statsmodels")
    with pytest.raises(ValueError, match="window"):
        StatsmodelsSeries(dataset="nile", window=75).describe()  # 100 years: no training target left


@pytest.mark.parametrize("dataset, length", [("co2", 2284), ("nile", 100), ("elnino", 732)])
def test_other_statsmodels_series_load_without_gaps(dataset, length):
    _need("statsmodels")
    data = StatsmodelsSeries(dataset=dataset, window=4, normalize=False)
    series = data.load_series()
    assert len(series) == length and not torch.isnan(series).any()


def test_missing_data_package_names_the_extra():
    with pytest.raises(MissingDataPackage, match=r"pip install -e '\.\[data\]'") as caught:
        import_data_package("no_such_data_package_xyz.datasets", "Imaginary")
    assert "Imaginary" in str(caught.value) and isinstance(caught.value, ValueError)


class NeedsMissingPackage(JapaneseVowels):
    """A datamodule whose data package is not installed (this test module is importable by class path)."""

    def load_splits(self):
        import_data_package("no_such_data_package_xyz", "NeedsMissingPackage")


def test_missing_data_package_is_a_one_line_exit_2(cli, workdir):
    document = {
        "model": {"class_path": "RNNClassifier"},
        "data": {"class_path": f"{__name__}.NeedsMissingPackage"},
        "trainer": {"max_epochs": 1},
    }
    path = workdir / "missing.yaml"
    path.write_text(yaml.safe_dump(document))

    result = cli("train", path)

    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "no_such_data_package_xyz" in lines[0] and "pip install -e '.[data]'" in lines[0], result.err
    assert not (workdir / "mlflow.db").exists()
