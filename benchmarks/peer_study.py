"""trainlab's demo study against the script it replaces: wall time, epochs trained, best value, ratio.

The peer is the script a competent Lightning user writes for the same study (optuna-examples'
pytorch_lightning_simple.py plus MLflow): an Optuna ``objective(trial)`` that builds the demo's MLP
(64 → 128 → 64 → 10, ReLU, dropout) on the demo's digits split and search space (the optimizer as a
conditional choice with its own arguments, weight decay, dropout: the same dimensions, named
``..._Choice`` where trainlab writes ``...@Choice``, which MLflow refuses in parameter names), trains
it with ``optuna_integration.PyTorchLightningPruningCallback`` on ``val/acc`` and Lightning's
``MLFlowLogger`` (one nested run per trial under a parent run, with the trial's parameters and
per-epoch curves), TPE with seed 42 and 5 startup trials, median pruner (3 startup trials, 2 warm-up
epochs), 20 trials of 20 epochs. Like optuna-examples, it keeps the study in memory and evaluates no
test set per trial.

Data: scikit-learn's digits with the same split as trainlab's ``Digits`` datamodule (``split_seed`` 0:
20% test, then 15% of the rest for validation; pixels normalised with the training split's mean and
std), rebuilt here in plain torch as a user would, batched by a standard ``DataLoader`` over a
``TensorDataset`` (batch 64, validation batches of 256 as trainlab uses).

trainlab runs as its CLI with its default command, ``trainlab study studies/digits_mlp.yaml``, in a fresh
temporary directory (its own default stores there); the peer runs as ``python peer_study.py --peer DIR``
in another. Both are subprocesses, so both pay interpreter start and imports. Rounds alternate which one
goes first, so a busy spell of a shared machine hits both. Each round also times what both pay before any
work of their own (``python -c "import lightning, mlflow, optuna, ..."``), and the summary says how much
faster than the peer's the rest of trainlab's study is, and would have to be for the goal.

    .venv/bin/python benchmarks/peer_study.py                        # 2 rounds of the full study (~2 min on 2 cores)
    .venv/bin/python benchmarks/peer_study.py --rounds 1 --trials 4  # a quick check

Goal (issue 13): peer / trainlab wall time >= 2, at an equal or better best value.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = REPO / "studies" / "digits_mlp.yaml"
EXPERIMENT = "digits-mlp"
GOAL = 2.0


# ---------------------------------------------------------------------------------------------------
# The peer: a plain Optuna + Lightning + MLflow script
# ---------------------------------------------------------------------------------------------------
def digits_loaders(batch_size: int = 64, eval_batch_size: int = 256, seed: int = 0):
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)

    def carve(x, y, fraction):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        held = int(round(len(y) * fraction))
        return (x[order[held:]], y[order[held:]]), (x[order[:held]], y[order[:held]])

    (x_train, y_train), _test = carve(x, y, 0.2)
    (x_train, y_train), (x_val, y_val) = carve(x_train, y_train, 0.15)
    mean, std = x_train.mean(), x_train.std()
    train = TensorDataset((x_train - mean) / std, y_train)
    val = TensorDataset((x_val - mean) / std, y_val)
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=eval_batch_size)


def make_module(optimizer_class: str, optimizer_args: dict, dropout: float):
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchmetrics.classification import MulticlassAccuracy

    class DigitsMLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(64, 128), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(128, 64), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(64, 10),
            )  # fmt: skip
            self.val_acc = MulticlassAccuracy(10, average="micro")

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            self.val_acc.update(logits, y)
            self.log("val/loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True)
            self.log("val/acc", self.val_acc, on_step=False, on_epoch=True)

        def configure_optimizers(self):
            optimizer = getattr(torch.optim, optimizer_class.rsplit(".", 1)[-1])
            return optimizer(self.parameters(), **optimizer_args)

    return DigitsMLP()


def suggest(trial) -> tuple[str, dict, float]:
    """The demo's search space: the optimizer, then its own arguments, then weight decay and dropout."""
    optimizer = trial.suggest_categorical(
        "optimizer.class_path", ["torch.optim.SGD", "torch.optim.Adam", "torch.optim.RMSprop", "torch.optim.Adagrad", "torch.optim.NAdam"]
    )
    name = optimizer.rsplit(".", 1)[-1]
    lr = lambda low, high: trial.suggest_float(f"optimizer.init_args.lr_{name}", low, high, log=True)  # noqa: E731
    if name == "SGD":
        args = {"lr": lr(1e-3, 0.3), "momentum": trial.suggest_float("optimizer.init_args.momentum_SGD", 0.5, 0.99),
                "nesterov": trial.suggest_categorical("optimizer.init_args.nesterov_SGD", [False, True])}  # fmt: skip
    elif name == "Adam":
        betas = trial.suggest_categorical("optimizer.init_args.betas_Adam", ["[0.9, 0.999]", "[0.8, 0.99]", "[0.95, 0.9999]"])
        args = {"lr": lr(1e-4, 1e-2), "betas": tuple(json.loads(betas))}
    elif name == "RMSprop":
        args = {"lr": lr(1e-4, 1e-2), "momentum": trial.suggest_float("optimizer.init_args.momentum_RMSprop", 0.0, 0.9),
                "alpha": trial.suggest_float("optimizer.init_args.alpha_RMSprop", 0.9, 0.999)}  # fmt: skip
    elif name == "Adagrad":
        args = {"lr": lr(1e-3, 0.3)}
    else:
        betas = trial.suggest_categorical("optimizer.init_args.betas_NAdam", ["[0.9, 0.999]", "[0.8, 0.99]"])
        args = {"lr": lr(1e-4, 1e-2), "betas": tuple(json.loads(betas))}
    args["weight_decay"] = trial.suggest_float("optimizer.init_args.weight_decay", 1e-6, 1e-2, log=True)
    dropout = trial.suggest_float("model.init_args.dropout", 0.0, 0.5)
    return optimizer, args, dropout


def run_peer(workdir: Path, trials: int, epochs: int) -> None:
    """The whole peer script: a parent MLflow run, one nested run per trial, study.optimize."""
    import lightning as L
    import mlflow
    import optuna
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
    from optuna_integration import PyTorchLightningPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    uri = f"sqlite:///{workdir}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    train_loader, val_loader = digits_loaders()

    def objective(trial, parent_id: str) -> float:
        optimizer, args, dropout = suggest(trial)
        L.seed_everything(42, verbose=False)
        model = make_module(optimizer, args, dropout)
        logger = MLFlowLogger(EXPERIMENT, run_name=f"trial-{trial.number}", tracking_uri=uri, tags={MLFLOW_PARENT_RUN_ID: parent_id})
        logger.log_hyperparams(trial.params)
        pruning = PyTorchLightningPruningCallback(trial, monitor="val/acc")
        trainer = L.Trainer(
            max_epochs=epochs, logger=logger, callbacks=[pruning], enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model, train_loader, val_loader)
        pruning.check_pruned()
        return trainer.callback_metrics["val/acc"].item()

    sampler = optuna.samplers.TPESampler(seed=42, n_startup_trials=5)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    study = optuna.create_study(study_name=EXPERIMENT, direction="maximize", sampler=sampler, pruner=pruner)
    with mlflow.start_run(run_name="study") as parent:
        study.optimize(lambda trial: objective(trial, parent.info.run_id), n_trials=trials)
        mlflow.log_params(study.best_params)
        mlflow.log_metric("best_val_acc", study.best_value)
    (workdir / "summary.json").write_text(json.dumps(summary(study)))  # for the benchmark, not part of a user's script


# ---------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------
def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall


def summary(study) -> dict:
    import optuna

    trials = study.trials
    return {
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best": study.best_value,
        "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
    }


def measure_trainlab(trials: int, epochs: int) -> dict:
    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.storage import default_storage_url

    with tempfile.TemporaryDirectory(prefix="trainlab-peer-bench-") as tmp:
        command = [str(Path(sys.executable).parent / "trainlab"), "study", str(STUDY_FILE)]
        command += (["--n-trials", str(trials)] if trials != 20 else []) + ([f"trainer.max_epochs={epochs}"] if epochs != 20 else [])
        wall = timed(command, Path(tmp))
        study, _ = load_existing_study(default_storage_url(f"sqlite:///{tmp}/mlflow.db"), EXPERIMENT)
        return {"wall": wall, **summary(study)}


def measure_peer(trials: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="peer-bench-") as tmp:
        wall = timed([sys.executable, __file__, "--peer", tmp, "--trials", str(trials), "--epochs", str(epochs)], Path(tmp))
        return {"wall": wall, **json.loads((Path(tmp) / "summary.json").read_text())}


# What both pay before any work of their own: the interpreter and the libraries both import (the peer also
# imports optuna_integration; trainlab imports sklearn.datasets for the digits too, in its workers).
IMPORTS = "import lightning, mlflow, optuna, sklearn.datasets"


def measure_imports(trials: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="imports-bench-") as tmp:
        return {"wall": timed([sys.executable, "-c", IMPORTS], Path(tmp))}


def print_floor(wall: dict[str, float]) -> None:
    """Where the goal stands against the floor both share: the imports are paid once by each, whatever
    either does, so the rest of trainlab's study must be faster than the rest of the peer's by more than 2x."""
    floor = wall["imports"]
    rest = {name: wall[name] - floor for name in ("peer", "trainlab")}
    budget = wall["peer"] / GOAL - floor
    print(f"shared floor: {floor:.1f} s to start Python and import Lightning (torch), MLflow, Optuna, scikit-learn (both pay it)")
    print(f"after it: peer {rest['peer']:.1f} s, trainlab {rest['trainlab']:.1f} s ({rest['peer'] / rest['trainlab']:.2f}x); "
          f"the goal leaves trainlab {budget:.1f} s after it, {rest['peer'] / budget:.2f}x the peer's pace" if budget > 0 else
          f"after it: peer {rest['peer']:.1f} s, trainlab {rest['trainlab']:.1f} s; the goal cannot be met (the floor alone exceeds peer/{GOAL})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each runs both once)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--peer", metavar="DIR", help=argparse.SUPPRESS)  # run the peer script itself in DIR
    args = parser.parse_args()
    if args.peer:
        run_peer(Path(args.peer), args.trials, args.epochs)
        return

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.trials} trials x {args.epochs} epochs", flush=True)
    results: dict[str, list[dict]] = {"peer": [], "trainlab": [], "imports": []}
    measures = {"peer": measure_peer, "trainlab": measure_trainlab, "imports": measure_imports}
    for round_index in range(args.rounds):
        order = ("peer", "trainlab", "imports") if round_index % 2 == 0 else ("imports", "trainlab", "peer")
        for name in order:
            figures = measures[name](args.trials, args.epochs)
            results[name].append(figures)
            if name == "imports":
                print(f"  round {round_index + 1}/{args.rounds}  imports: wall {figures['wall']:7.1f} s", flush=True)
                continue
            print(
                f"  round {round_index + 1}/{args.rounds} {name:>8}: wall {figures['wall']:7.1f} s, {figures['epochs']:4d} epochs "
                f"({figures['complete']} complete, {figures['pruned']} pruned), best val/acc {figures['best']:.4f}",
                flush=True,
            )
    wall = {name: sum(r["wall"] for r in runs) / len(runs) for name, runs in results.items()}
    best = {name: max(r["best"] for r in runs) for name, runs in results.items() if name != "imports"}
    epochs = {name: sum(r["epochs"] for r in runs) / len(runs) for name, runs in results.items() if name != "imports"}
    ratio = wall["peer"] / wall["trainlab"]
    print(f"\nmean wall: peer {wall['peer']:.1f} s ({epochs['peer']:.0f} epochs), trainlab {wall['trainlab']:.1f} s ({epochs['trainlab']:.0f} epochs)")
    print(f"best val/acc: peer {best['peer']:.4f}, trainlab {best['trainlab']:.4f}")
    met = ratio >= GOAL and best["trainlab"] >= best["peer"]
    print(f"peer/trainlab wall {ratio:.2f} (goal >= {GOAL} at an equal or better best value: {'met' if met else 'MISSED'})", flush=True)
    print_floor(wall)


if __name__ == "__main__":
    main()
