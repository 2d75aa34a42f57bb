"""Ending a run from outside the process that trained it (its process died): the reaper and the launcher."""

from __future__ import annotations


def end_mlflow_run(tracking_uri: str, run_id: str | None, status: str, reason: str) -> None:
    """End ``run_id`` with ``status`` unless it already ended (then its own status stands)."""
    if not run_id:
        return
    from trainlab.tracking.run_record import RUN_STATUS_TAG
    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    if client.get_run(run_id).info.status != "RUNNING":
        return
    client.set_tag(run_id, RUN_STATUS_TAG, reason)
    client.set_terminated(run_id, status)
