"""Every training knob from the course takes effect: each test checks what the knob changes, not that it parses.

Short real runs on scikit-learn's digits through the one training path (fit_run), sharing one MLflow store
per module; net-level knobs are checked on models built from experiment-file sections.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from conftest import STUDIES
from trainlab.config import resolve_run_config
from trainlab.training import build, fit_run


def _document(*, model=None, optimizer=None, lr_scheduler=None, trainer=None, data=None) -> dict:
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document.pop("study", None)
    document.pop("search_space", None)
    document["model"]["init_args"].update(model or {})
    document["data"]["init_args"].update(data or {})
    if optimizer is not None:
        document["optimizer"] = optimizer
    if lr_scheduler is not None:
        document["lr_scheduler"] = lr_scheduler
    document["trainer"].update({"max_epochs": 3, "limit_train_batches": 5, **(trainer or {})})
    return document


def _model(**model_args):
    """The model an experiment file builds (datamodule facts filled in), without training it."""
    config = resolve_run_config(_document(model=model_args))
    config = build.with_data_facts(config, build.build_datamodule(config))
    return build.build_model(config)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('knobs') / 'mlflow.db'}"


def _train(store: str, document: dict, callbacks=()):
    return fit_run(resolve_run_config(document), store, callbacks=list(callbacks))


def _curve(result, name: str) -> list[float]:
    return [value for _, value in sorted(result.history[name])]


class GradientProbe(L.Callback):
    """Records the gradients each optimizer step used.

    A post-step hook: Lightning runs forward and backward inside ``optimizer.step(closure)`` and clips in
    place after the closure, and the next zero_grad comes with the next step, so the gradients seen here
    are exactly the (clipped) ones the update applied.
    """

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.largest: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        def record(optimizer, args, kwargs):
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
            self.largest.append(max(g.abs().max().item() for g in grads))

        trainer.optimizers[0].register_step_post_hook(record)


class FinalWeights(L.Callback):
    """Sum of |w| and of w² over the net's weight matrices when training ends."""

    def on_train_end(self, trainer, pl_module) -> None:
        weights = [p.detach() for name, p in pl_module.named_parameters() if p.dim() >= 2]
        self.l1 = sum(w.abs().sum().item() for w in weights)
        self.l2 = sum((w**2).sum().item() for w in weights)


# -- optimisation ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_gradient_clipping_bounds_the_gradient_by_norm_and_by_value(store):
    sgd = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}
    probes = {}
    for name, clip in {"none": {}, "norm": {"gradient_clip_val": 0.05}, "value": {"gradient_clip_val": 0.001, "gradient_clip_algorithm": "value"}}.items():
        probes[name] = GradientProbe()
        _train(store, _document(optimizer=sgd, trainer={"max_epochs": 1, **clip}), [probes[name]])

    assert max(probes["none"].norms) > 0.05 and max(probes["none"].largest) > 0.001, "unclipped gradients must exceed the bounds"
    assert len(probes["norm"].norms) == 5
    assert max(probes["norm"].norms) <= 0.05 * (1 + 1e-4)
    assert max(probes["value"].largest) <= 0.001 + 1e-9


SCHEDULES = {
    "exponential x0.98": (
        {"class_path": "torch.optim.lr_scheduler.ExponentialLR", "init_args": {"gamma": 0.98}},
        lambda lr, epoch: lr * 0.98**epoch,
    ),
    "step": (
        {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}},
        lambda lr, epoch: lr * 0.5**epoch,
    ),
    "cosine": (
        {"class_path": "torch.optim.lr_scheduler.CosineAnnealingLR", "init_args": {"T_max": 4}},
        lambda lr, epoch: lr * (1 + math.cos(math.pi * epoch / 4)) / 2,
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_epoch_schedules_change_the_logged_learning_rate(store, name):
    scheduler, expected = SCHEDULES[name]
    result = _train(store, _document(lr_scheduler=scheduler))

    lrs = _curve(result, "optim/lr")  # LearningRateMonitor, one value per epoch, as MLflow has it
    assert len(lrs) == 3
    for epoch, lr in enumerate(lrs):
        assert lr == pytest.approx(expected(0.002, epoch), rel=1e-6), (epoch, lrs)


@pytest.mark.integration
def test_reduce_lr_on_plateau_halves_the_rate_when_the_monitored_metric_stalls(store):
    # A required improvement of 100 in val/loss never happens after the first epoch: every epoch is a plateau.
    plateau = {
        "class_path": "lightning.pytorch.cli.ReduceLROnPlateau",
        "init_args": {"monitor": "val/loss", "factor": 0.5, "patience": 0, "threshold": 100, "threshold_mode": "abs"},
    }
    result = _train(store, _document(lr_scheduler=plateau, trainer={"max_epochs": 4}))

    assert _curve(result, "optim/lr") == pytest.approx([0.002, 0.002, 0.001, 0.0005])


@pytest.mark.integration
def test_one_cycle_runs_over_the_whole_fit_without_a_step_count(store):
    one_cycle = {"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.01}}
    probe = GradientProbe()  # counts the optimizer steps
    result = _train(store, _document(lr_scheduler=one_cycle, trainer={"max_epochs": 4}), [probe])

    assert result.status == "FINISHED"
    lrs = _curve(result, "optim/lr")
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs), lrs  # warm up, then anneal
    assert len(probe.norms) == 20  # total_steps came from the trainer: 4 epochs x 5 batches, no overrun


@pytest.mark.integration
def test_early_stopping_ends_training_before_max_epochs(store):
    # min_delta 100: no epoch after the first counts as an improvement, so patience 1 stops at epoch 2.
    stopper = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/loss", "patience": 1, "min_delta": 100}}
    result = _train(store, _document(trainer={"max_epochs": 10, "callbacks": [stopper]}))

    assert result.status == "FINISHED"
    assert len(_curve(result, "val/loss")) == 2


@pytest.mark.integration
def test_l1_penalty_and_weight_decay_shrink_the_weights(store):
    runs = {
        "plain": _document(optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002, "weight_decay": 0.0}}),
        "l1": _document(model={"l1_penalty": 0.001}, optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002, "weight_decay": 0.0}}),
        "l2": _document(optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002, "weight_decay": 5.0}}),
    }
    weights, results = {}, {}
    for name, document in runs.items():
        weights[name] = FinalWeights()
        results[name] = _train(store, document, [weights[name]])

    assert weights["l1"].l1 < 0.9 * weights["plain"].l1
    assert weights["l2"].l2 < 0.9 * weights["plain"].l2
    penalty = _curve(results["l1"], "train/l1_penalty")
    assert len(penalty) == 3 and penalty[-1] < penalty[0]
    assert "train/l1_penalty" not in results["plain"].history


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_l1_penalty_is_added_to_the_training_loss():
    model = _model(l1_penalty=0.01)
    model.train()
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    torch.manual_seed(0)
    data_loss = model.shared_step(batch, "train")
    torch.manual_seed(0)
    total = model.training_step(batch, 0)

    expected = data_loss + 0.01 * sum(p.abs().sum() for name, p in model.named_parameters() if p.dim() >= 2)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() > data_loss.item() + 0.01


@pytest.mark.parametrize(
    "class_path, init_args, expected",
    [
        ("torch.optim.SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True}),
        ("torch.optim.Adam", {"lr": 0.001, "betas": [0.8, 0.9]}, {"betas": (0.8, 0.9)}),
        ("torch.optim.AdamW", {"lr": 0.003, "weight_decay": 0.05}, {"weight_decay": 0.05}),
        ("torch.optim.RMSprop", {"lr": 0.001, "alpha": 0.95}, {"alpha": 0.95}),
        ("torch.optim.Adagrad", {"lr": 0.05, "lr_decay": 0.01}, {"lr_decay": 0.01}),
        ("torch.optim.NAdam", {"lr": 0.002, "momentum_decay": 0.005}, {"momentum_decay": 0.005}),
    ],
)
def test_any_torch_optimizer_by_class_path(class_path, init_args, expected):
    document = _document(optimizer={"class_path": class_path, "init_args": init_args})
    config = resolve_run_config(document)
    config = build.with_data_facts(config, build.build_datamodule(config))
    optimizer = build.build_model(config).configure_optimizers()

    assert type(optimizer).__name__ == class_path.rsplit(".", 1)[1]
    group = optimizer.param_groups[0]
    assert group["lr"] == init_args["lr"]
    for key, value in expected.items():
        assert (tuple(group[key]) if isinstance(value, tuple) else group[key]) == value
    # It steps: the parameters move.
    before = [p.detach().clone() for p in group["params"]]
    for p in group["params"]:
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, group["params"]))


# -- the net ---------------------------------------------------------------------------------------


def _weight_matrices(model) -> list[torch.Tensor]:
    return [m.weight.detach() for m in model.modules() if isinstance(m, nn.Linear)]


def test_weight_init_schemes_give_their_distributions():
    torch.manual_seed(0)
    big = {"hidden_sizes": [256, 256]}
    uniform = _weight_matrices(_model(init="uniform", **big))
    assert all(w.abs().max() <= 0.05 for w in uniform) and uniform[1].abs().max() > 0.049
    normal = _weight_matrices(_model(init="normal", **big))[1]
    assert normal.std().item() == pytest.approx(0.05, rel=0.05)
    xavier = _weight_matrices(_model(init="xavier_uniform", **big))[1]
    bound = math.sqrt(6 / (256 + 256))
    assert xavier.abs().max() <= bound and xavier.abs().max() > 0.98 * bound
    kaiming = _weight_matrices(_model(init="kaiming_normal", **big))[1]
    assert kaiming.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    default = _weight_matrices(_model(init="default", **big))[1]  # PyTorch's: uniform within 1/sqrt(fan_in)
    assert default.abs().max() <= 1 / math.sqrt(256)
    biases = [m.bias for m in _model(init="normal").modules() if isinstance(m, nn.Linear)]
    assert all(torch.count_nonzero(b) == 0 for b in biases)


def test_orthogonal_init_makes_recurrent_weights_orthonormal():
    from trainlab.models import RNNClassifier

    for cell in ("rnn", "lstm", "gru"):
        model = RNNClassifier(cell=cell, hidden_size=16, init="orthogonal", num_classes=3, input_shape=[5, 4])
        w = model.net.rnn.weight_hh_l0.detach()  # (gates x hidden, hidden): orthonormal columns
        assert torch.allclose(w.T @ w, torch.eye(16), atol=1e-5), cell
        default = RNNClassifier(cell=cell, hidden_size=16, num_classes=3, input_shape=[5, 4]).net.rnn.weight_hh_l0.detach()
        assert not torch.allclose(default.T @ default, torch.eye(16), atol=1e-2)


@pytest.mark.parametrize("name, module, lowest, highest", [
    ("relu", nn.ReLU, 0.0, None),
    ("tanh", nn.Tanh, -1.0, 1.0),
    ("sigmoid", nn.Sigmoid, 0.0, 1.0),
    ("gelu", nn.GELU, -0.2, None),
    ("leaky_relu", nn.LeakyReLU, None, None),
])
def test_activation_is_the_hidden_layers_nonlinearity(name, module, lowest, highest):
    model = _model(activation=name)
    layers = [m for m in model.net.modules() if isinstance(m, module)]
    assert len(layers) == 2  # one per hidden layer
    outputs = []
    layers[0].register_forward_hook(lambda m, i, o: outputs.append((i[0], o)))
    model.eval()
    model(torch.randn(64, 1, 8, 8) * 3)
    pre, post = outputs[0]
    assert torch.allclose(post, module()(pre))
    if lowest is not None:
        assert post.min() >= lowest
    if highest is not None:
        assert post.max() <= highest
    if name == "leaky_relu":
        assert (post < 0).any()  # negative inputs leak through, scaled


def test_batch_norm_on_and_off():
    with_bn = _model(batch_norm=True)
    norms = [m for m in with_bn.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == 2
    with_bn.train()
    with_bn(torch.randn(32, 1, 8, 8) + 5)
    assert norms[0].running_mean.abs().sum() > 0  # statistics are being tracked
    assert not any(isinstance(m, nn.BatchNorm1d) for m in _model(batch_norm=False).modules())


def test_dropout_is_random_in_training_and_off_in_evaluation():
    x = torch.randn(8, 1, 8, 8)
    model = _model(dropout=0.5)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    no_dropout = _model(dropout=0.0)
    no_dropout.train()
    assert torch.equal(no_dropout(x), no_dropout(x))


# -- batching --------------------------------------------------------------------------------------


def test_batch_size_and_shuffling():
    from trainlab.datamodules import Digits

    shuffled = Digits(batch_size=50)
    loader = shuffled.train_dataloader()
    n = len(shuffled.splits["train"][1])
    first, second = [torch.cat([y for _, y in loader]) for _ in range(2)]
    sizes = [len(y) for _, y in loader]
    assert sizes[:-1] == [50] * (len(sizes) - 1) and sum(sizes) == n and len(sizes) == math.ceil(n / 50)
    assert not torch.equal(first, second), "a new order every epoch"
    assert torch.equal(first.sort().values, second.sort().values), "each sample once per epoch"

    in_order = Digits(batch_size=50, shuffle=False)
    loader = in_order.train_dataloader()
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    assert torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[0], in_order.splits["train"][1])


def test_balanced_sampler_balances_the_classes_in_batches():
    from trainlab.datamodules import BreastCancer

    def malignant_share(datamodule) -> float:
        labels = torch.cat([y for _ in range(5) for *_, y in datamodule.train_dataloader()])
        return (labels == 0).float().mean().item()

    natural = malignant_share(BreastCancer(batch_size=32))
    balanced = malignant_share(BreastCancer(batch_size=32, balanced=True))
    assert natural == pytest.approx(212 / 569, abs=0.03)
    assert balanced == pytest.approx(0.5, abs=0.04)
    assert balanced - natural > 0.08


# -- bad knob values -------------------------------------------------------------------------------

BAD_KNOBS = {
    "unknown loss": (["model.init_args.loss=hinge"], "model.init_args.loss: got 'hinge'; expected one of"),
    "bce for ten classes": (["model.init_args.loss=bce"], "model.init_args.loss: got 'bce'"),
    "unknown init": (["model.init_args.init=glorot"], "model.init_args.init: got 'glorot'; expected one of"),
    "unknown activation": (["model.init_args.activation=swish"], "model.init_args.activation: got 'swish'"),
    "negative clip value": (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val: got -1"),
    "unknown clip algorithm": (["trainer.gradient_clip_algorithm=max"], "gradient_clip_algorithm"),
    "negative l1": (["model.init_args.l1_penalty=-0.1"], "model.init_args.l1_penalty"),
    "negative weight decay": (["optimizer.init_args.weight_decay=-0.1"], "optimizer.init_args.weight_decay"),
    "unknown scheduler": (["lr_scheduler.class_path=torch.optim.lr_scheduler.Wobbly"], "lr_scheduler"),
    "balanced regression": (["data.class_path=Diabetes", "model.class_path=MLPRegressor", "data.init_args.balanced=true"], "balanced: true needs one class label"),
}


@pytest.mark.parametrize("name", list(BAD_KNOBS))
def test_bad_knob_values_are_one_line_errors_with_exit_2(name, cli, workdir, tracking_uri):
    overrides, fragment = BAD_KNOBS[name]
    document = _document()
    if name == "balanced regression":
        document["model"]["init_args"] = {"hidden_sizes": [8]}
    path = workdir / "knob.yaml"
    path.write_text(yaml.safe_dump(document))

    result = cli("train", path, *overrides)

    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), result.err
    assert fragment in lines[0], lines[0]
    assert not (workdir / "mlflow.db").exists(), "validation must not create the tracking store or a run"
