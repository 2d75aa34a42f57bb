"""Ending a run from outside the process that trained it (its process died): the reaper and the launcher."""

from __future__ import annotations

from collections.abc import Mapping


def end_mlflow_run(tracking_uri: str, run_id: str | None, status: str, reason: str, tags: Mapping[str, str] | None = None) -> bool:
    """End ``run_id`` with ``status`` unless it already ended (then its own status stands). True if it ended it."""
    if not run_id:
        return False
    from mlflow.entities import RunTag
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    from trainlab.tracking.run_record import RUN_STATUS_TAG
    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    all_tags = {RUN_STATUS_TAG: reason[:MAX_TAG_VAL_LENGTH], **(tags or {})}
    client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in all_tags.items()])
    client.set_terminated(run_id, status)
    return True
