"""Study spec and search space: validation before anything exists, conditional sampling, applying values.

No training here: bad specs must be refused before a study or a run is created, and sampling is checked
against a real (in-memory) Optuna study.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import STUDIES

DEMO = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())


def _write_study(workdir, study=None, search_space=None, **run_changes):
    document = copy.deepcopy(DEMO)
    if study is not None:
        document["study"] = study
    if search_space is not None:
        document["search_space"] = search_space
    for key, value in run_changes.items():
        document[key] = value
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


BAD_SPECS = [
    pytest.param(None, {"model.init_args.dropout": {"low": 0.5, "high": 0.1}}, "search_space.model.init_args.dropout", "low < high", id="low>=high"),
    pytest.param(None, {"optimizer.init_args.lr": {"low": 0, "high": 0.1, "log": True}}, "search_space.optimizer.init_args.lr.low", "> 0 for a log scale", id="log-low<=0"),
    pytest.param(None, {"model.init_args.dropuot": {"low": 0.0, "high": 0.5}}, "search_space.model.init_args.dropuot", "did you mean 'dropout'", id="unknown-key"),
    pytest.param(None, {"model.init_args.activation": {"choices": []}}, "search_space.model.init_args.activation.choices", "non-empty", id="empty-choices"),
    pytest.param(None, {"model.init_args.dropout": {"low": 0.0, "high": 1.5}}, "search_space.model.init_args.dropout", "[0, 1)", id="beyond-model-range"),
    pytest.param(None, {"lr": {"low": 0.1, "high": 0.2}}, "search_space.lr", "dotted key inside a run section", id="not-a-config-key"),
    pytest.param(
        None,
        {"optimizer.class_path": {"choices": {"torch.optim.SGD": {"optimizer.init_args.betas": {"choices": [[0.9, 0.99]]}}}}},
        "search_space.optimizer.init_args.betas",
        "when optimizer.class_path=torch.optim.SGD",
        id="arg-the-chosen-class-lacks",
    ),
    pytest.param({"n_trials": 3, "sampler": "annealing"}, None, "study.sampler.type", "one of tpe, random, cmaes, gp, grid, qmc", id="unknown-sampler"),
    pytest.param({"n_trials": 3, "pruner": {"type": "early"}}, None, "study.pruner.type", "one of median", id="unknown-pruner"),
    pytest.param({"n_trials": 3, "sampler": {"type": "tpe", "startup": 3}}, None, "study.sampler", "TPESampler", id="bad-sampler-option"),
    pytest.param({"metric": "test/acc", "direction": "maximize", "n_trials": 3}, None, "study.metric", "test metrics must not steer", id="test-metric"),
    pytest.param({"metric": "val/f1", "n_trials": 3}, None, "study.direction", "cannot be inferred", id="direction-needed"),
    pytest.param({"metric": "val/acc"}, None, "study.n_trials", "a number of trials", id="no-budget"),
    pytest.param({"n_trials": 0}, None, "study.n_trials", "an integer >= 1", id="zero-trials"),
    pytest.param({"n_trials": 3, "timeout": "soon"}, None, "study.timeout", "a duration such as", id="bad-timeout"),
]


@pytest.mark.parametrize("study, search_space, key, expected", BAD_SPECS)
def test_bad_spec_is_one_line_exit_2_and_creates_nothing(workdir, cli, study, search_space, key, expected):
    path = _write_study(workdir, study=study, search_space=search_space)
    result = cli("study", path)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"trainlab: error: {key}"), lines[0]
    assert expected in lines[0]
    assert not (workdir / "mlflow.db").exists() and not (workdir / "optuna_journal.log").exists()


def test_bad_jobs_count_is_refused(workdir, cli):
    result = cli("study", STUDIES / "digits_mlp.yaml", "--jobs", "0")
    assert result.code == 2 and "--jobs: got 0; expected an integer >= 1" in result.err
    assert not (workdir / "mlflow.db").exists()


def test_a_key_searched_for_all_and_in_a_sub_space_is_refused():
    from trainlab.errors import ConfigError
    from trainlab.studies import parse_search_space

    section = {
        "optimizer.init_args.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "optimizer.class_path": {"choices": {"torch.optim.SGD": {"optimizer.init_args.lr": {"low": 0.01, "high": 0.1}}}},
    }
    with pytest.raises(ConfigError, match=r"choices\.torch\.optim\.SGD\.optimizer\.init_args\.lr: expected a key not also searched"):
        parse_search_space(section)


def test_demo_space_samples_each_optimizer_with_its_own_arguments():
    """Conditional sub-spaces: the chosen optimizer brings its own arguments; shared ones are always there."""
    import optuna

    from trainlab.config import resolve_run_config
    from trainlab.config.experiment import Experiment
    from trainlab.studies import apply_params, load_study_spec

    experiment = Experiment(run={k: v for k, v in DEMO.items() if k not in ("study", "search_space")}, study=DEMO["study"], search_space=DEMO["search_space"])
    spec = load_study_spec(experiment, check_run=False)
    own_args = {
        "torch.optim.SGD": {"lr", "momentum", "nesterov"},
        "torch.optim.Adam": {"lr", "betas"},
        "torch.optim.RMSprop": {"lr", "momentum", "alpha"},
        "torch.optim.Adagrad": {"lr"},
        "torch.optim.NAdam": {"lr", "betas"},
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = spec.space.sample(trial)
        chosen = values["optimizer.class_path"]
        seen.add(chosen)
        short = chosen.rsplit(".", 1)[-1]
        conditional = {name.split("@")[0].rsplit(".", 1)[-1] for name in trial.params if "@" in name}
        assert conditional == own_args[chosen], (chosen, trial.params)
        assert all(name.endswith(f"@{short}") for name in trial.params if "@" in name)
        assert {"optimizer.init_args.weight_decay", "model.init_args.dropout"} <= set(trial.params)
        document = resolve_run_config(apply_params(experiment.run, values)).document
        assert document["optimizer"]["class_path"] == chosen
        assert document["optimizer"]["init_args"]["lr"] == values["optimizer.init_args.lr"]
        if "betas" in own_args[chosen]:
            assert list(document["optimizer"]["init_args"]["betas"]) == values["optimizer.init_args.betas"]
        study.tell(trial, 0.0)
    assert seen == set(own_args)


def test_switching_class_drops_arguments_the_new_class_does_not_take():
    from trainlab.config import resolve_run_config
    from trainlab.studies import apply_params

    run = {k: copy.deepcopy(v) for k, v in DEMO.items() if k not in ("study", "search_space")}
    run["optimizer"]["init_args"]["betas"] = [0.8, 0.99]
    applied = apply_params(run, {"optimizer.class_path": "torch.optim.SGD", "optimizer.init_args.momentum": 0.9})
    assert "betas" not in applied["optimizer"]["init_args"]
    assert applied["optimizer"]["init_args"]["weight_decay"] == run["optimizer"]["init_args"]["weight_decay"]
    assert run["optimizer"]["init_args"]["betas"] == [0.8, 0.99], "the base run must not change"
    assert resolve_run_config(applied).document["optimizer"]["init_args"]["momentum"] == 0.9


def test_grid_needs_finite_values_and_lists_them():
    from trainlab.errors import ConfigError
    from trainlab.studies import parse_search_space
    from trainlab.studies.samplers import grid_of

    space = parse_search_space(
        {
            "data.init_args.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
            "model.init_args.dropout": {"low": 0.0, "high": 0.2, "step": 0.1},
            "model.init_args.hidden_sizes": {"choices": [[64], [128, 64]]},
        }
    )
    grid = grid_of(space)
    assert grid["data.init_args.batch_size"] == [32, 64, 96, 128]
    assert grid["model.init_args.dropout"] == pytest.approx([0.0, 0.1, 0.2])
    assert grid["model.init_args.hidden_sizes"] == ["[64]", "[128, 64]"]
    with pytest.raises(ConfigError, match="search_space.optimizer.init_args.lr: expected a step or choices"):
        grid_of(parse_search_space({"optimizer.init_args.lr": {"low": 1e-4, "high": 1e-2, "log": True}}))


def test_list_choices_come_back_as_lists():
    import optuna

    from trainlab.studies import parse_search_space

    space = parse_search_space({"model.init_args.hidden_sizes": {"choices": [[64], [128, 64]]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = {tuple(space.sample(study.ask())["model.init_args.hidden_sizes"]) for _ in range(20)}
    assert values == {(64,), (128, 64)}


def test_default_storage_sits_next_to_the_sqlite_store(tmp_path):
    from trainlab.secrets import mask_uri
    from trainlab.studies.storage import default_storage_url, resolve_storage_url

    assert default_storage_url(f"sqlite:///{tmp_path}/sub/mlflow.db") == str(tmp_path / "sub" / "optuna_journal.log")
    assert resolve_storage_url("postgresql://u:secret@db:5432/optuna", "sqlite:///mlflow.db") == "postgresql://u:secret@db:5432/optuna"
    # Issue 19: credentials are masked as user:***@host (public_url dropped the password; mask_uri replaced it).
    assert mask_uri("postgresql://u:secret@db:5432/optuna") == "postgresql://u:***@db:5432/optuna"


UNLAUNCHABLE = [
    pytest.param({"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu"}, [], "trainer.strategy: got 'ddp_spawn'; expected ddp for a multi-device trial", id="spawn"),
    pytest.param({"num_nodes": 2}, [], "trainer.num_nodes: got 2; expected 1 in a study", id="several-nodes"),
    pytest.param({}, ["--devices-per-trial", "0"], "--devices-per-trial: got 0; expected an integer >= 1", id="zero-devices"),
    pytest.param({"strategy": "ddp_fork"}, ["--devices-per-trial", "2"], "trainer.strategy: got 'ddp_fork'", id="option-meets-fork"),
    pytest.param(
        {"strategy": {"class_path": "lightning.pytorch.strategies.DDPStrategy", "init_args": {"start_method": "spawn"}}, "devices": 2, "accelerator": "cpu"},
        [], "trainer.strategy.init_args.start_method: got 'spawn'; expected popen", id="ddp-class-spawning",
    ),
]


@pytest.mark.parametrize("trainer, options, message", UNLAUNCHABLE)
def test_trials_a_process_group_cannot_run_are_refused_before_anything_exists(workdir, cli, trainer, options, message):
    """A multi-device trial runs as its own re-executed process group: spawned ranks and several nodes cannot."""
    path = _write_study(workdir, trainer={"max_epochs": 2, **trainer})
    result = cli("study", path, *options)
    assert result.code == 2 and f"trainlab: error: {message}" in result.err, result
    assert len(result.err.strip().splitlines()) == 1
    assert not (workdir / "optuna_journal.log").exists() and not (workdir / "mlflow.db").exists()


def test_processes_per_trial_follows_lightnings_meaning_of_devices():
    from trainlab.studies.devices import with_devices_per_trial
    from trainlab.training.processes import processes_for as processes_per_trial

    assert processes_per_trial({"devices": "auto", "accelerator": "cpu"}) == 1
    assert processes_per_trial({"devices": 2, "strategy": "ddp", "accelerator": "cpu"}) == 2
    assert processes_per_trial({"devices": [0, 1, 2], "strategy": "ddp"}) == 3
    assert processes_per_trial({"devices": "0,1", "strategy": "ddp"}) == 2
    assert processes_per_trial({"devices": 4, "strategy": "single_device"}) == 1
    run = {"trainer": {"max_epochs": 3}}
    assert with_devices_per_trial(run, 2)["trainer"] == {"max_epochs": 3, "devices": 2, "strategy": "ddp"}
    assert with_devices_per_trial(run, 1)["trainer"] == {"max_epochs": 3, "devices": 1}
    assert with_devices_per_trial({"trainer": {"strategy": "fsdp"}}, 4)["trainer"]["strategy"] == "fsdp"
    assert run == {"trainer": {"max_epochs": 3}}, "the study's own config is left as written"


def test_each_worker_gets_its_own_gpus():
    from trainlab.errors import ConfigError
    from trainlab.studies.devices import device_slots

    eight = [str(i) for i in range(8)]
    assert device_slots(8, 1, eight) == eight
    assert device_slots(2, 4, eight) == ["0,1,2,3", "4,5,6,7"]
    assert device_slots(3, None, ["4", "6"]) == ["4", "6", "4"], "without K, workers share GPUs round robin"
    assert device_slots(1, None, eight) is None, "one worker keeps every GPU the user gave it"
    assert device_slots(4, 2, []) is None, "CPU: nothing to pin; workers split the cores"
    with pytest.raises(ConfigError, match=r"at most 2 with --jobs 3: 3 x 4 needs 12 GPUs, this machine shows 8"):
        device_slots(3, 4, eight)


def test_the_gpus_a_trial_needs_come_from_the_option_or_the_file():
    from trainlab.studies.devices import trial_gpu_count

    assert trial_gpu_count({"devices": "auto"}, 4) == 4
    assert trial_gpu_count({"devices": 2, "strategy": "ddp"}, None) == 2, "a file asking for 2 GPUs gets slots of 2"
    assert trial_gpu_count({"devices": "auto"}, None) is None, "auto: whatever the worker's slot holds"
    assert trial_gpu_count({"devices": 2, "accelerator": "cpu"}, 2) == 0, "CPU trials pin no GPUs"


def test_study_jobs_is_a_count_or_auto():
    import os

    from trainlab.config.experiment import Experiment
    from trainlab.errors import ConfigError
    from trainlab.studies.spec import load_study_spec
    from trainlab.studies.worker import auto_jobs

    def _spec(study):
        run = {k: v for k, v in DEMO.items() if k not in ("study", "search_space")}
        return load_study_spec(Experiment(run=run, study=study, search_space=DEMO["search_space"]), check_run=False)

    assert _spec({**DEMO["study"], "jobs": 3}).jobs == 3
    assert _spec({**DEMO["study"], "jobs": "auto"}).jobs == "auto"
    assert _spec({k: v for k, v in DEMO["study"].items() if k != "jobs"}).jobs == 1
    for bad in (0, "many", True, 1.5):
        with pytest.raises(ConfigError) as error:
            _spec({**DEMO["study"], "jobs": bad})
        assert error.value.key == "study.jobs" and "auto" in error.value.message
    assert auto_jobs(0, []) == len(os.sched_getaffinity(0))  # CPU trials: a worker per core
    assert auto_jobs(2, ["0", "1", "2", "3"]) == 2 and auto_jobs(None, ["0", "1"]) == 2  # GPU trials: a worker per slot
