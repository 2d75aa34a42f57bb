"""The study's best trial, tested once at the study's end.

Trials never touch the test set: a search that saw test scores would select on them, and every trial would
pay a test pass. When the workers are done, the best trial's kept weights (its run's ``checkpoints/best.pt``)
are tested once, through the same set-up as any run (:func:`trainlab.training.prepare.prepare_run`), and
the ``test/*`` metrics are logged on that trial's run (tag ``trainlab.test`` says when). A refit is tested
as every run is.
"""

from __future__ import annotations

import tempfile

from trainlab.studies.report import best_trial
from trainlab.studies.trial import MLFLOW_RUN_ATTR

TESTED_AT_STUDY_END = "run at the study's end on the kept checkpoint (the study's best trial)"


def evaluate_best_trial_on_test(study, uri: str) -> tuple[int, dict[str, float]] | None:
    """``(trial number, test metrics)``; None with several objectives, no completed trial, no kept weights,
    or a model without a test step."""
    import time

    import torch
    from mlflow.entities import Metric, RunTag

    from trainlab.config import resolve_run_config
    from trainlab.reproduce.recorded import recorded_config
    from trainlab.tracking.store import tracking_client
    from trainlab.training.prepare import prepare_run
    from trainlab.training.quiet import quiet_lightning

    if len(study.directions) > 1:
        return None  # no single best: the --pick rule chooses the trial to refit, and the refit is tested
    best = best_trial(study)
    run_id = best.user_attrs.get(MLFLOW_RUN_ATTR) if best else None
    if run_id is None:
        return None
    client = tracking_client(uri)
    run = client.get_run(run_id)
    if run.data.tags.get("trainlab.test") == TESTED_AT_STUDY_END:  # another invocation of the study tested it
        return best.number, {key: value for key, value in run.data.metrics.items() if key.startswith("test/")}
    if not any(item.path == "checkpoints" for item in client.list_artifacts(run_id)):
        return None  # checkpointing was off: there are no kept weights to test
    # One process here, whatever the trial trained on: a test pass needs no process group.
    one_process = {"test": True, "trainer.enable_progress_bar": False, "trainer.devices": 1, "trainer.num_nodes": 1, "trainer.strategy": "auto"}
    config = resolve_run_config(recorded_config(client, run_id)).with_values(one_process)
    quiet_lightning()
    prepared = prepare_run(config)
    if prepared.test_skipped:
        return None
    with tempfile.TemporaryDirectory(prefix="trainlab-best-") as folder:
        kept = torch.load(client.download_artifacts(run_id, "checkpoints/best.pt", folder), map_location="cpu", weights_only=True)
    prepared.model.load_state_dict(kept["state_dict"])
    results = prepared.trainer.test(prepared.model, datamodule=prepared.datamodule, verbose=False)
    metrics = {key: float(value) for key, value in (results[0] if results else {}).items()}
    now = int(time.time() * 1000)
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, int(kept.get("epoch", 0))) for key, value in metrics.items()],
            tags=[RunTag("trainlab.test", TESTED_AT_STUDY_END)],
        )
    except Exception:
        # Invocations of one study that end together test the same weights: the first write stands.
        if client.get_run(run_id).data.tags.get("trainlab.test") != TESTED_AT_STUDY_END:
            raise
    return best.number, metrics
