"""What pruning saves: the demo study with its default pruner vs the same study with pruning off.

Runs ``trainlab study studies/digits_mlp.yaml`` twice in this process, each into its own temporary
store (same sampler seed, same trials budget), once as the file says (median pruner) and once with
``study.pruner=none``. Prints the epochs each study trained, the best validation accuracy and the best
trial's test accuracy, and the ratios. Goal: <= 50% of the epochs for a best value within 1 point.

Epoch counts do not depend on machine load; wall times do (other processes on a shared machine stretch
them), so they are printed for information only.

    .venv/bin/python benchmarks/pruning.py                  # 20 trials x up to 20 epochs, twice
    .venv/bin/python benchmarks/pruning.py --trials 10 --file studies/digits_mlp.yaml
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_study(file: Path, trials: int, overrides: list[str]) -> dict:
    from optuna.trial import TrialState

    from trainlab.cli import main
    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.storage import default_storage_url

    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            uri = f"sqlite:///{tmp}/mlflow.db"
            started = time.perf_counter()
            code = main(["study", str(file), *overrides, "--n-trials", str(trials), "--study-name", "bench", "--tracking-uri", uri])
            wall = time.perf_counter() - started
            if code != 0:
                raise SystemExit(f"study failed with exit code {code}")
            study, _ = load_existing_study(default_storage_url(uri), "bench")
            best = study.best_trial
            trials_done = study.get_trials(deepcopy=False)
            return {
                "epochs": sum(len(t.intermediate_values) for t in trials_done),
                "pruned": sum(t.state == TrialState.PRUNED for t in trials_done),
                "best": best.value,
                "best_test": (best.user_attrs.get("trainlab.test_metrics") or {}).get("test/acc", float("nan")),
                "wall": wall,
            }
        finally:
            os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=REPO / "studies" / "digits_mlp.yaml")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes slow small-model training a lot)")
    pruned = run_study(args.file, args.trials, [])
    full = run_study(args.file, args.trials, ["study.pruner=none"])
    print(f"study {args.file.name}, {args.trials} trials each")
    print(f"{'':<16}{'epochs':>8}{'pruned':>8}{'best val/acc':>14}{'its test/acc':>14}{'wall s':>9}")
    for name, result in (("default pruner", pruned), ("no pruning", full)):
        print(f"{name:<16}{result['epochs']:>8}{result['pruned']:>8}{result['best']:>14.4f}{result['best_test']:>14.4f}{result['wall']:>9.0f}")
    epochs_ratio = pruned["epochs"] / full["epochs"]
    gap_points = 100 * (full["best"] - pruned["best"])
    print(f"epochs with pruning / without: {epochs_ratio:.2f}  (goal <= 0.50)")
    print(f"best val/acc lost to pruning: {gap_points:+.2f} points  (goal <= 1.00)")
    print(f"wall time with pruning / without: {pruned['wall'] / full['wall']:.2f}  (machine-load dependent)")


if __name__ == "__main__":
    main()
