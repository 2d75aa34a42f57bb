"""The model/datamodule contract: a plain LightningModule is a first-class citizen; a declared contract is read
in one place; the set-up fills datamodule facts into a new config and never changes a validated one."""

from __future__ import annotations

import lightning as L

from conftest import STUDIES


def test_a_plain_module_gets_the_fallbacks_and_a_declared_one_its_own():
    from trainlab.contract import Monitor, data_facts, data_fingerprint, monitored_metric, task_type
    from trainlab.models import MLPClassifier

    # Nothing declared: nothing monitored (the checkpoint keeps the last epoch), never a guessed name.
    assert monitored_metric(L.LightningModule()) == Monitor(None) and Monitor(None).describe() == "none (last epoch kept)"
    assert monitored_metric(MLPClassifier) == Monitor("val/acc", "max") and monitored_metric(MLPClassifier).direction == "maximize"
    assert task_type(L.LightningModule()) is None and task_type(MLPClassifier) == "classification"
    assert data_facts(L.LightningDataModule()) == {} and data_fingerprint(L.LightningDataModule()) is None


def test_the_monitored_metric_is_the_study_s_then_the_file_s_then_the_module_s():
    from trainlab.contract import Monitor, inferred_mode, monitored_metric
    from trainlab.errors import ConfigError
    from trainlab.models import MLPClassifier

    document = {"monitor": {"metric": "val_f1"}}
    assert monitored_metric(MLPClassifier, document) == Monitor("val_f1", "max")  # the file wins; mode from the name
    assert monitored_metric(L.LightningModule(), {"monitor": {"metric": "val_acc", "mode": "min"}}) == Monitor("val_acc", "min")
    assert monitored_metric(MLPClassifier, document, study={"metric": "val/loss", "direction": "minimize"}) == Monitor("val/loss", "min")
    assert monitored_metric(MLPClassifier, document, study={"metric": "val_f1"}).describe() == "val_f1 (max)"
    try:
        monitored_metric(MLPClassifier, study={"metric": "val_f1"})
        raise AssertionError("a study metric other than the monitor needs a direction")
    except ConfigError as exc:
        assert exc.key == "study.direction"
    assert [inferred_mode(n) for n in ("val_acc", "val/accuracy", "valid-dice", "val/loss", "val_mae", "val/auroc")] == ["max", "max", "max", "min", "min", "max"]


def test_prepare_run_fills_data_facts_into_a_new_config_and_leaves_the_resolved_one_as_it_was():
    from trainlab.config import load_experiment, resolve_run_config
    from trainlab.training import prepare_run

    config = resolve_run_config(load_experiment(STUDIES / "digits_mlp.yaml", ["trainer.max_epochs=1"]).run)
    before = config.to_yaml()
    prepared = prepare_run(config)
    assert prepared.config.document["model"]["init_args"]["num_classes"] == 10
    assert config.to_yaml() == before, "the validated config is frozen"
    config.document["model"]["init_args"]["num_classes"] = 3  # a copy: the config itself cannot be changed
    assert config.to_yaml() == before
    assert prepared.checkpoint.monitor == "val/acc" and prepared.trainer.max_epochs == 1


def test_every_shipped_experiment_resolves_through_json_to_the_document_its_yaml_dump_states():
    """resolve_run_config reads jsonargparse's dump as JSON (a third of the YAML round trip's time, paid by every
    trial): for every experiment file we ship, that is the same document the YAML dump gives."""
    import copy
    import json

    import yaml

    from trainlab.config import load_experiment
    from trainlab.config.run_config import run_parser

    parser = run_parser()
    for path in sorted(STUDIES.glob("*.yaml")):
        namespace = parser.parse_object(copy.deepcopy(load_experiment(path, []).run))
        as_json = json.loads(parser.dump(namespace, skip_validation=True, format="json"))
        assert as_json == yaml.safe_load(parser.dump(namespace, skip_validation=True)), path.name
