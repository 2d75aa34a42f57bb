"""Bad input: one line naming key, value and expectation; exit code 2; no MLflow run created."""

from __future__ import annotations

import pytest
import yaml

from conftest import STUDIES


def _demo(**changes):
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document.pop("study", None)
    document.pop("search_space", None)
    for dotted, value in changes.items():
        node = document
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return document


CASES = {
    "unknown model key": (_demo(model__init_args__dropot=0.5), [], ["model.init_args.dropot", "dropout"]),
    "unknown trainer key": (_demo(trainer__max_epoch=3), [], ["trainer.max_epoch", "max_epochs"]),
    "unknown section": ({**_demo(), "trainr": {"max_epochs": 1}}, [], ["trainr", "top-level section"]),
    "wrong type": (_demo(trainer__max_epochs="ten"), [], ["trainer.max_epochs", "'ten'", "int"]),
    "wrong type in list": (_demo(model__init_args__hidden_sizes="wide"), [], ["model.init_args.hidden_sizes", "list"]),
    "negative lr": (_demo(optimizer__init_args__lr=-0.1), [], ["optimizer.init_args.lr", "-0.1", "> 0"]),
    "dropout >= 1": (_demo(model__init_args__dropout=1.0), [], ["model.init_args.dropout", "1.0", "[0, 1)"]),
    "zero batch size": (_demo(data__init_args__batch_size=0), [], ["data.init_args.batch_size", "0", "> 0"]),
    "unknown model class": (_demo(model__class_path="NoSuchNet"), [], ["model.class_path", "NoSuchNet"]),
    "unimportable class": (_demo(model__class_path="nowhere.Net"), [], ["model.class_path", "nowhere.Net"]),
    "not a LightningModule": (_demo(model__class_path="torch.nn.Linear"), [], ["model.class_path", "LightningModule"]),
    "bad override value": (_demo(), ["model.init_args.dropout=2"], ["model.init_args.dropout", "2"]),
    "malformed override": (_demo(), ["trainer.max_epochs"], ["trainer.max_epochs", "dotted.key=value"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_is_one_line_exit_2_and_no_run(name, cli, workdir):
    document, overrides, expected_fragments = CASES[name]
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(document))

    result = cli("train", path, *overrides)

    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("trainlab: error: ")
    for fragment in expected_fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.err
    assert not (workdir / "mlflow.db").exists(), "validation must not create the tracking store or a run"


def test_missing_file(cli, workdir):
    result = cli("train", workdir / "nope.yaml")
    assert result.code == 2
    assert result.err.strip() == f"trainlab: error: {workdir / 'nope.yaml'}: expected an existing experiment file (YAML) (check the path)"
    assert not (workdir / "mlflow.db").exists()


def test_invalid_yaml_names_the_line(cli, workdir):
    path = workdir / "broken.yaml"
    path.write_text("model:\n  class_path: MLPClassifier\n  init_args: [unclosed\n")
    result = cli("train", path)
    assert result.code == 2
    assert f"{path}:" in result.err and "valid YAML" in result.err


def test_debug_shows_the_traceback(cli, workdir):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(_demo(optimizer__init_args__lr=-1)))
    result = cli("train", path, "--debug")
    assert result.code == 2
    assert "Traceback" in result.err


def test_unknown_command_option_is_one_line(cli, workdir):
    result = cli("train", "--no-such-flag")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1


def test_runs_for_unknown_experiment(cli, workdir, fast_digits):
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").search_experiments()  # a store that exists, without that experiment
    result = cli("runs", "--experiment", "no-such-experiment")
    assert result.code == 2
    assert "--experiment: got 'no-such-experiment'" in result.err
