"""Launching a run: the one place that decides whether it trains in this process or in a process group.

``trainlab train``, every study trial, ``trainlab reproduce``, ``trainlab confirm`` and a study's refit call
:func:`launch`. With ``slurm`` settings (``--launcher slurm``) the run is one SLURM job whose tasks call
:func:`launch` again (:mod:`trainlab.slurm.train_job`). One process (or a rank that torchrun, SLURM or a
process group already started): the run trains here, through :func:`~trainlab.training.fit_run.fit_run`.
Several processes: Lightning's ``ddp`` strategy would re-execute the launching command for every extra
rank (a study worker, the loop of ``trainlab confirm``, the audit of ``trainlab reproduce``), so the run
trains in a process group of its own, ``python -m trainlab.training.group_member``, which Lightning may re-execute freely::

    launch ── python -m trainlab.training.group_member --launch launch.json      rank 0
                 └─ Lightning ── the same command, LOCAL_RANK=1..N-1              ranks > 0

Rank 0 writes the run id to a file as soon as the run exists and, at the end, how it ended; ``launch``
returns the same :class:`RunResult` (or raises the same exception) either way.

What a caller adds beyond config and tags travels as a :class:`Role`: its callbacks and hooks are rebuilt
in every process that trains (a study trial re-attaches to its Optuna trial there; a refit logs the trained
module where it lives, on rank 0).

Example::

    result = launch(config, "sqlite:///mlflow.db", tags={"trainlab.kind": "confirmation"})
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainlab.config import RunConfig
from trainlab.training.fit_run import RunEnded, RunResult, fit_run
from trainlab.training.resume import ResumeFrom

GROUP_MEMBER_MODULE = "trainlab.training.group_member"


class Role:
    """What a caller adds to a run, in a form that crosses into a process group.

    A subclass overrides what it needs. ``to_launch`` returns plain JSON values; every process that trains
    rebuilds the role with ``from_launch`` and asks it for its ``callbacks``. ``on_run_created`` and
    ``after_run`` run where rank 0 trains (``after_run`` with the finished result, the trained module
    still at hand through the role's callbacks).
    """

    log_name = "run_process.log"  # the group's output, kept on the run under logs/

    def to_launch(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_launch(cls, fields: dict[str, Any]) -> Role:
        return cls()

    def callbacks(self) -> list[Any]:
        return []

    def on_run_created(self, run_id: str) -> None:
        return None

    def after_run(self, result: RunResult) -> None:
        return None


def launch(
    config: RunConfig,
    tracking_uri: str | None = None,
    *,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    callbacks: Sequence[Any] = (),
    on_run_created: Callable[[str], Any] | None = None,
    role: Role | None = None,
    resume: ResumeFrom | None = None,
    slurm: Any = None,
) -> RunResult:
    """Train ``config`` into a tracked run, here or as a process group; see the module docstring.

    Raises what :func:`~trainlab.training.fit_run.fit_run` raises (``RunEnded``, ``ConfigError``,
    ``KeyboardInterrupt``, a pruned trial's ``TrialPruned``), from a process group too. ``callbacks`` are
    live objects and cannot enter a process group: a caller that needs them there gives a ``role``.
    ``on_run_created(run_id)`` is called as soon as the run exists here, after the group ends otherwise.
    ``resume`` continues an unfinished run from its checkpoint (``trainlab train --resume``).
    ``slurm`` (``--launcher slurm``: the job's :class:`~trainlab.slurm.SlurmSettings`, from
    :func:`~trainlab.slurm.train_job.checked_job`): the run trains as one SLURM job, followed until it ends.
    """
    from trainlab.tracking.store import resolve_tracking_uri
    from trainlab.training.processes import processes_for, started_as_rank

    uri = resolve_tracking_uri(tracking_uri)
    role = role or Role()
    if slurm is not None and not started_as_rank():
        if callbacks or on_run_created:
            raise ValueError("callbacks cannot cross into a SLURM job; give launch() a Role that builds them")
        from trainlab.slurm.train_job import train_as_job

        return train_as_job(slurm, config, uri, parent_run_id, tags, role, resume)
    if started_as_rank() or processes_for(config.section("trainer")) == 1:
        return train_here(config, uri, parent_run_id, tags, [*callbacks, *role.callbacks()], role, on_run_created, resume)
    if callbacks:
        raise ValueError("callbacks cannot cross into a process group; give launch() a Role that builds them")
    return _train_as_group(config, uri, parent_run_id, tags, role, on_run_created, resume)


def train_here(config: RunConfig, uri: str, parent_run_id, tags, callbacks: list, role: Role, on_run_created=None, resume: ResumeFrom | None = None) -> RunResult:
    """fit_run in this process, with the role's hooks; also what rank 0 of a process group runs."""

    def created(run_id: str) -> None:
        role.on_run_created(run_id)
        if on_run_created:
            on_run_created(run_id)

    result = fit_run(config, uri, parent_run_id=parent_run_id, tags=tags, callbacks=callbacks, on_run_created=created, resume=resume)
    if result.run_id is not None:  # rank 0
        role.after_run(result)
    return result


def _train_as_group(config: RunConfig, uri: str, parent_run_id, tags, role: Role, on_run_created, resume: ResumeFrom | None) -> RunResult:
    import torch

    from trainlab.tracking.end_run import end_mlflow_run
    from trainlab.training.processes import keep_output, output_tail, processes_for, run_as_group
    from trainlab.training.progress import relay_progress

    ranks = processes_for(config.section("trainer"))
    threads = max(1, torch.get_num_threads() // ranks)  # this process's share of the cores, split over ranks
    # A private folder (0700), removed when the group ends: the launch file holds the tracking URI, which may
    # carry a password, and the command line names only the file.
    with tempfile.TemporaryDirectory(prefix="trainlab-group-") as folder:
        result_path, run_id_path = Path(folder) / "result.json", Path(folder) / "run_id"
        launch_file = {
            "config": config.to_yaml(),
            "tracking_uri": uri,
            "parent_run_id": parent_run_id,
            "tags": dict(tags or {}),
            "role": {"class": f"{type(role).__module__}:{type(role).__qualname__}", "fields": role.to_launch()},
            "result_path": str(result_path),
            "run_id_path": str(run_id_path),
            "threads": threads,
            "resume": asdict(resume) if resume else None,
        }
        launch_file["progress_path"] = str(Path(folder) / "progress.txt")
        with relay_progress(Path(launch_file["progress_path"])):  # rank 0's epoch lines, as they come
            code, log_path = run_as_group(GROUP_MEMBER_MODULE, launch_file, Path(folder), role.log_name)
        run_id = run_id_path.read_text() if run_id_path.exists() else None
        keep_output(uri, run_id, log_path)
        if run_id and on_run_created:
            on_run_created(run_id)
        if not result_path.exists():
            reason = f"the run's {ranks}-process group exited with code {code} before reporting: {output_tail(log_path)}"
            end_mlflow_run(uri, run_id, "FAILED", reason)  # rank 0 died before it could end its run
            raise RunEnded(RunResult(run_id, "FAILED", reason=reason))
        report = json.loads(result_path.read_text())
    if "raised" in report:
        raise rebuild_exception(report["raised"])
    return result_from_json(report["result"])


def write_report(path: str, *, result: RunResult | None = None, raised: BaseException | None = None) -> None:
    """Rank 0's report to its launcher: the result, or the exception that ended the run (written whole or not at all)."""
    report = {"result": asdict(result)} if raised is None else {"raised": describe_exception(raised)}
    partial = Path(path + ".partial")
    partial.write_text(json.dumps(report, default=repr))
    os.replace(partial, path)


def result_from_json(fields: dict[str, Any]) -> RunResult:
    fields = dict(fields)
    fields["history"] = {name: [tuple(point) for point in points] for name, points in (fields.get("history") or {}).items()}
    return RunResult(**fields)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON, so that the launcher can raise its equal (see :func:`rebuild_exception`)."""
    from trainlab.errors import InputError

    described: dict[str, Any] = {"class": f"{type(exc).__module__}:{type(exc).__qualname__}", "message": str(exc)}
    if isinstance(exc, RunEnded):
        described["result"] = asdict(exc.result)
        described["cause"] = describe_exception(exc.__cause__) if exc.__cause__ is not None else None
    elif isinstance(exc, InputError):
        described["fields"] = exc.fields()
    return described


def rebuild_exception(described: dict[str, Any]) -> BaseException:
    from trainlab.class_paths import import_class
    from trainlab.errors import InputError

    if "result" in described:
        ended = RunEnded(result_from_json(described["result"]))
        ended.__cause__ = rebuild_exception(described["cause"]) if described.get("cause") else None
        return ended
    try:
        cls = import_class(described["class"])
        if "fields" in described and issubclass(cls, InputError):
            return cls(**described["fields"])
        return cls(described["message"])
    except Exception:  # a class that cannot be rebuilt from its message: keep its name and message
        return RuntimeError(f"{described['class'].rsplit(':', 1)[-1]}: {described['message']}")
