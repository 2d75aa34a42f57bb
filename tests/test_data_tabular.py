"""Tabular data: scikit-learn's shipped sets and the user's CSV files (targets, features, categorical columns)."""

from __future__ import annotations

import pytest
import torch
import yaml

from trainlab.datamodules import BreastCancer, CSVDataModule, Diabetes, Wine


@pytest.mark.parametrize(
    "datamodule, rows, facts",
    [
        (Wine, 178, {"input_shape": [13], "num_classes": 3}),
        (BreastCancer, 569, {"input_shape": [30], "num_classes": 2}),
    ],
)
def test_sklearn_classification_tables(datamodule, rows, facts):
    data = datamodule()
    assert data.describe() == facts
    assert sum(len(split[-1]) for split in data.splits.values()) == rows
    x = data.splits["train"][0]
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=1e-4), "features standardised on train"


def test_diabetes_is_regression_with_its_target_scale():
    data = Diabetes()
    facts = data.describe()
    y = data.splits["train"][1]
    assert y.dtype == torch.float32 and 25 <= y.min() and y.max() <= 346
    assert facts["num_outputs"] == 1 and facts["input_shape"] == [10]
    assert facts["target_mean"] == pytest.approx(y.mean().item()) and facts["target_std"] == pytest.approx(y.std().item())


def _penguins(path):
    path.write_text(
        "species,island,bill_mm,mass_g,heavy\n"
        + "\n".join(
            f"{species},{island},{bill},{mass},{mass > 4000}"
            for species, island, bill, mass in [
                ("Adelie", "Torgersen", 39.1, 3750.0),
                ("Gentoo", "Biscoe", 46.1, 4500.0),
                ("Adelie", "Dream", 37.8, 3400.0),
                ("Chinstrap", "Dream", 49.5, 3800.0),
                ("Gentoo", "Biscoe", 50.0, 5700.0),
                ("Adelie", "Biscoe", 38.2, 3950.0),
                ("Chinstrap", "Dream", 51.3, 3650.0),
                ("Gentoo", "Biscoe", 48.7, 4450.0),
                ("Adelie", "Torgersen", 36.6, 3700.0),
                ("Gentoo", "Biscoe", 47.5, 5300.0),
            ]
        )
    )
    return path


def test_csv_classification_with_text_labels_and_one_hot_features(tmp_path):
    path = _penguins(tmp_path / "penguins.csv")
    data = CSVDataModule(path=str(path), target="species", features=["island", "bill_mm"], normalize=False, test_fraction=0.2, val_fraction=0.2)

    facts = data.describe()
    assert data.class_names == ["Adelie", "Chinstrap", "Gentoo"]
    assert facts == {"input_shape": [4], "num_classes": 3}  # bill_mm + one column per island (3)
    x = torch.cat([split[0] for split in data.splits.values()])
    assert ((x[:, 1:] == 0) | (x[:, 1:] == 1)).all() and (x[:, 1:].sum(1) == 1).all(), "one island per row"
    assert sorted(x[:, 0].tolist()) == pytest.approx(sorted([39.1, 46.1, 37.8, 49.5, 50.0, 38.2, 51.3, 48.7, 36.6, 47.5]))


def test_csv_regression_on_a_float_target(tmp_path):
    path = _penguins(tmp_path / "penguins.csv")
    data = CSVDataModule(path=str(path), target="mass_g", features=["bill_mm"])
    facts = data.describe()
    assert facts["num_outputs"] == 1 and facts["input_shape"] == [1] and "num_classes" not in facts
    assert data.splits["train"][1].dtype == torch.float32


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"target": "species", "categorical": "error"}, r"non-numeric feature column\(s\) \['island', 'heavy'\]"),
        ({"target": "beak"}, r"no column\(s\) \['beak'\]; its columns are"),
        ({"target": "species", "features": ["species"]}, "also listed as a feature"),
        ({"target": "island", "task": "regression"}, "regression needs a numeric target"),
    ],
)
def test_csv_problems_are_named(tmp_path, arguments, message):
    path = _penguins(tmp_path / "penguins.csv")
    with pytest.raises(ValueError, match=message):
        CSVDataModule(path=str(path), **arguments).describe()


def test_csv_missing_values_are_refused_by_column(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("a,b,y\n1,2,0\n3,,1\n5,6,0\n7,8,1\n")
    with pytest.raises(ValueError, match=r"missing values in column\(s\) \['b'\]"):
        CSVDataModule(path=str(path), target="y").describe()


def test_bad_csv_is_a_one_line_exit_2(cli, workdir):
    path = _penguins(workdir / "penguins.csv")
    document = {
        "model": {"class_path": "MLPClassifier"},
        "data": {"class_path": "CSVDataModule", "init_args": {"path": str(path), "target": "species", "categorical": "error"}},
    }
    config = workdir / "csv.yaml"
    config.write_text(yaml.safe_dump(document))

    result = cli("train", config)

    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "island" in lines[0] and "categorical: onehot" in lines[0], result.err
    assert not (workdir / "mlflow.db").exists()
