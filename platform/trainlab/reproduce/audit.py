"""Recorded vs now: what differs, what each difference means, and which reproduction to expect.

Each :class:`Difference` carries its effect:
- ``SAME_EXPERIMENT``: config or data differ, so the re-run is a different experiment and cannot match;
- ``EXACTNESS``: code, packages, hardware, world size or determinism differ, so the re-run may be close
  but need not be bit-identical;
- ``INFO``: recorded for the record (other packages, kernel version), no effect on the numbers expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainlab.tracking.environment import EXACT, KEY_PACKAGES, STATISTICAL

SAME_EXPERIMENT = "different experiment"
EXACTNESS = "exactness not guaranteed"
INFO = "no effect expected"

_HARDWARE_KEYS = ("cpu", "cpu_capability", "torch_threads", "gpus", "driver", "cuda", "cudnn")
_DISTRIBUTED_KEYS = ("world_size", "num_nodes", "devices", "accelerator", "strategy")
USER_CODE = "user code"
_BLOCKING_REASONS = {"config": "config.yaml was edited after the run", "data": "the data differ from what the run used"}


@dataclass
class Difference:
    aspect: str
    recorded: str
    now: str
    effect: str


@dataclass
class Audit:
    """The differences found and the reproduction they allow: ``exact`` or ``statistical``."""

    differences: list[Difference]
    recorded_label: str | None
    recorded_reasons: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> list[Difference]:
        return [d for d in self.differences if d.effect == SAME_EXPERIMENT]

    @property
    def edited_user_files(self) -> list[str]:
        """User source files that differ from the run's (the likely cause when a re-run does not match)."""
        prefix = f"{USER_CODE}: "
        return [d.aspect[len(prefix):] for d in self.differences if d.aspect.startswith(prefix) and d.aspect != f"{prefix}not captured"]

    @property
    def expectation(self) -> str:
        if self.recorded_label != EXACT or any(d.effect == EXACTNESS for d in self.differences):
            return STATISTICAL
        return EXACT

    def causes(self) -> list[str]:
        """Each difference that may change the numbers, as ``what changed (what to do)``: the causes a MISMATCH
        line names. User code files are named by the caller (see :attr:`edited_user_files`)."""
        return [cause for d in self.differences if d.effect != INFO and not d.aspect.startswith(USER_CODE) and (cause := _cause(d))]

    def verdict(self) -> str:
        """One line: what the re-run can be expected to give, and why."""
        if self.blocking:
            aspects = {d.aspect.split(":")[0] for d in self.blocking}
            why = [text for aspect, text in _BLOCKING_REASONS.items() if aspect in aspects]
            return f"cannot match: {'; '.join(why)}"
        if self.expectation == EXACT:
            return "exact reproduction expected: recorded as exact; code, packages, data, hardware, world size and determinism unchanged"
        why = []
        if self.recorded_label != EXACT:
            why.append(f"recorded as {self.recorded_label or 'unlabelled'}" + (f" ({'; '.join(self.recorded_reasons)})" if self.recorded_reasons else ""))
        changed = sorted({d.aspect.split(":")[0] for d in self.differences if d.effect == EXACTNESS})
        if changed:
            why.append(f"{', '.join(changed)} changed")
        return "only statistical reproduction expected: " + "; ".join(why)


def audit(
    recorded_config: dict[str, Any] | None,
    recorded_environment: dict[str, Any] | None,
    recorded_data: dict[str, Any] | None,
    now_environment: dict[str, Any],
    now_data: dict[str, Any] | None,
    *,
    config_edits: list[tuple[str, str | None, str | None]] = (),
    now_config: dict[str, Any] | None = None,
) -> Audit:
    """Compare a recorded run with the environment and data a re-run has (or will have) now.

    ``config_edits`` come from :func:`trainlab.reproduce.recorded.config_edits`; ``now_config`` is the
    config as it resolves today (new defaults show up there). ``now_environment`` comes from
    :func:`state_now` (set up by ``prepare_run``, so seeding and determinism flags are already known) or
    from the re-run itself.
    """
    differences = [Difference(f"config: {key}", _show(logged), _show(edited), SAME_EXPERIMENT) for key, logged, edited in config_edits]
    if recorded_config is not None and now_config is not None:
        for key, old, new in config_differences(recorded_config, now_config):
            differences.append(Difference(f"config resolves differently: {key}", _show(old), _show(new), EXACTNESS))
    differences += data_differences(recorded_data, now_data)
    if recorded_environment is None:
        differences.append(Difference("environment", "not recorded", "-", EXACTNESS))
        label, reasons = None, []
    else:
        differences += environment_differences(recorded_environment, now_environment)
        reproducibility = recorded_environment.get("reproducibility") or {}
        label, reasons = reproducibility.get("label"), list(reproducibility.get("reasons") or [])
    return Audit(differences, label, reasons)


def state_now(config) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The environment and data fingerprint a re-run of ``config`` (a RunConfig) will have, found without training.

    Sets the run up with :func:`~trainlab.training.prepare.prepare_run`, the set-up fit_run trains with, so
    devices, world size, precision, seeding and the determinism flags are the ones the re-run will use.
    """
    from trainlab.contract import data_fingerprint
    from trainlab.tracking.environment import capture_environment
    from trainlab.tracking.user_code import add_user_code
    from trainlab.training.prepare import prepare_run

    import logging

    from trainlab.training.quiet import quiet_lightning

    # The set-up is only looked at: Lightning's banner ("GPU available: ...", tips) would land in the verdict.
    quiet_lightning()
    banner = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = banner.level
    banner.setLevel(logging.WARNING)
    try:
        prepared = prepare_run(config)
    finally:
        banner.setLevel(level)
    environment, _ = capture_environment(prepared.trainer, seed=prepared.config.seed, code_of=(type(prepared.model), prepared.datamodule))
    add_user_code(environment, prepared.model, prepared.datamodule)
    return environment, data_fingerprint(prepared.datamodule)


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, a value, b value)`` for every dotted key that differs, the ``tracking`` section aside."""
    from trainlab.tracking.run_record import flatten

    flat_a = {k: v for k, v in flatten(a).items() if not k.startswith("tracking")}
    flat_b = {k: v for k, v in flatten(b).items() if not k.startswith("tracking")}
    missing = object()
    rows = []
    for key in sorted(set(flat_a) | set(flat_b)):
        old, new = flat_a.get(key, missing), flat_b.get(key, missing)
        unset = (None, missing)  # absent and null are the same setting: no phantom seed row for an unseeded run
        if old != new and not (old in unset and new in unset):
            rows.append((key, None if old is missing else old, None if new is missing else new))
    return rows


def data_differences(recorded: dict[str, Any] | None, now: dict[str, Any] | None) -> list[Difference]:
    if recorded is None and now is None:
        return [Difference("data", "no fingerprint", "no fingerprint", INFO)]
    if recorded is None or now is None:
        return [Difference("data", _fingerprint(recorded), _fingerprint(now), EXACTNESS)]
    rows = []
    for split in sorted(set(recorded) | set(now)):
        old, new = recorded.get(split), now.get(split)
        if old != new:
            rows.append(Difference(f"data: {split}", _split(old), _split(new), SAME_EXPERIMENT))
    return rows


def environment_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    rows = []
    if recorded.get("python") != now.get("python"):
        rows.append(Difference("packages: python", _show(recorded.get("python")), _show(now.get("python")), EXACTNESS))
    old_packages, new_packages = _packages(recorded), _packages(now)
    others = []
    for name in sorted(set(old_packages) | set(new_packages)):
        old, new = old_packages.get(name), new_packages.get(name)
        if old == new:
            continue
        if name in KEY_PACKAGES:
            rows.append(Difference(f"packages: {name}", _show(old), _show(new), EXACTNESS))
        else:
            others.append(f"{name} {old or '-'} -> {new or '-'}")
    if others:
        shown = ", ".join(others[:4]) + (f", ... ({len(others)} in all)" if len(others) > 4 else "")
        rows.append(Difference("packages: others", f"{len(others)} differ", shown, INFO))
    rows += _section(recorded, now, "hardware", _HARDWARE_KEYS, EXACTNESS)
    rows += _section(recorded, now, "distributed", _DISTRIBUTED_KEYS, EXACTNESS)
    determinism_keys = sorted(set(recorded.get("determinism") or {}) | set(now.get("determinism") or {}))
    rows += _section(recorded, now, "determinism", tuple(determinism_keys), EXACTNESS)
    rows += code_differences(recorded, now)
    rows += user_code_differences(recorded, now)
    if recorded.get("platform") != now.get("platform"):
        rows.append(Difference("platform", _show(recorded.get("platform")), _show(now.get("platform")), INFO))
    return rows


def code_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    """Per repository (matched by name): commit, and the digest of the uncommitted diff."""
    old_repos, new_repos = _repos(recorded), _repos(now)
    rows = []
    for name in sorted(set(old_repos) | set(new_repos)):
        old, new = old_repos.get(name), new_repos.get(name)
        if old is None or new is None:
            rows.append(Difference(f"code: {name}", "recorded" if old else "not part of the run", "in use" if new else "not part of the run now", INFO))
            continue
        if old.get("commit") != new.get("commit"):
            rows.append(Difference(f"code: {name} commit", _short(old.get("commit")), _short(new.get("commit")), EXACTNESS))
        if old.get("diff_sha256") != new.get("diff_sha256"):
            rows.append(Difference(f"code: {name} uncommitted changes", _changes(old), _changes(new), EXACTNESS))
    return rows


def user_code_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    """Per user source file (``user_code`` in environment.json, see tracking/user_code.py): its sha256 then and now.

    An edited file may change the numbers, so exactness is off; it is named, as the likely cause of a mismatch.
    """
    if "user_code" not in recorded:  # recorded before trainlab captured user code
        return []
    old, new = _user_files(recorded), _user_files(now)
    rows = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            rows.append(Difference(f"{USER_CODE}: {name}", f"sha256 {old[name][:8]}", "not used now", EXACTNESS))
        elif name not in old:
            rows.append(Difference(f"{USER_CODE}: {name}", "not used then", f"sha256 {new[name][:8]}", EXACTNESS))
        elif old[name] != new[name]:
            rows.append(Difference(f"{USER_CODE}: {name}", f"sha256 {old[name][:8]}", f"sha256 {new[name][:8]} (edited)", EXACTNESS))
    for missing in (recorded.get("user_code") or {}).get("not_captured") or []:
        rows.append(Difference(f"{USER_CODE}: not captured", missing, "-", EXACTNESS))
    return rows


def _user_files(environment: dict[str, Any]) -> dict[str, str]:
    return {entry["file"]: entry["sha256"] for entry in (environment.get("user_code") or {}).get("files") or []}


def changed_files(diff_a: str, diff_b: str) -> list[str]:
    """Files whose uncommitted change differs between two ``code.diff`` texts (present in one, or patched differently)."""
    a, b = _split_diff(diff_a), _split_diff(diff_b)
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


def _split_diff(diff: str) -> dict[str, str]:
    files: dict[str, list[str]] = {}
    current = None
    for line in diff.splitlines():
        if line.startswith("diff --git ") and " b/" in line:
            current = line.split(" b/", 1)[1]
            files[current] = []
        elif current is not None and not line.startswith("index "):  # blob ids change with unrelated edits
            files[current].append(line)
    return {name: "\n".join(lines) for name, lines in files.items()}


def _repos(environment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Repositories by the name of the project, not by how its remote is written: a clone over ssh
    (``git@host:me/proj.git``), over https (``https://host/me/proj``) or a fork (``.../you/proj``) is the
    same ``proj``, and its commits and diffs are what is compared."""
    repos = environment.get("code_repos")
    if repos is None:  # recorded before trainlab kept one entry per repository
        repos = [environment["git"]] if (environment.get("git") or {}).get("commit") else []
    return {project_name(repo.get("name") or repo.get("root") or "repository"): repo for repo in repos}


def project_name(remote_or_folder: str) -> str:
    """``proj`` for ``git@github.com:me/proj.git``, ``https://github.com/you/proj/``, ``/home/me/proj``."""
    text = remote_or_folder.strip().rstrip("/")
    text = text.removesuffix(".git")
    return text.replace(":", "/").rsplit("/", 1)[-1] or remote_or_folder


def _packages(environment: dict[str, Any]) -> dict[str, str]:
    packages = environment.get("all_packages") or {}
    if isinstance(packages, list):  # older records: ["name==version", ...]
        packages = dict(item.lower().split("==", 1) for item in packages if "==" in item)
    merged = {name.lower(): version for name, version in packages.items()}
    merged.update({name: version for name, version in (environment.get("packages") or {}).items() if version})
    return merged


def _section(recorded: dict, now: dict, section: str, keys: tuple[str, ...], effect: str) -> list[Difference]:
    old, new = recorded.get(section) or {}, now.get(section) or {}
    return [Difference(f"{section}: {key}", _show(old.get(key)), _show(new.get(key)), effect) for key in keys if old.get(key) != new.get(key)]


def package_causes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Numeric packages (and Python) that differ, each as a cause with its ``pip install``."""
    return [cause for d in environment_differences(recorded, now) if d.aspect.startswith("packages: ") and d.effect == EXACTNESS and (cause := _cause(d))]


def _cause(d: Difference) -> str | None:
    """One difference as a cause with its remedy, e.g. ``torch 2.5.0 -> 2.6.0 (pip install torch==2.5.0)``."""
    section, _, what = d.aspect.partition(": ")
    if section == "packages" and what == "python":
        return f"python {d.recorded} -> {d.now} (run with Python {d.recorded})"
    if section == "packages" and "shadowed by" in f"{d.recorded} {d.now}":
        return f"{what} {d.recorded} -> {d.now} (import {what} from where the run did)"
    if section == "packages":
        remedy = f"pip install {what}=={d.recorded}" if d.recorded != "-" else f"pip uninstall {what}"
        return f"{what} {d.recorded} -> {d.now} ({remedy})"
    if section == "code" and what.endswith(" commit"):
        return f"code of {what.removesuffix(' commit')} at {d.now}, the run used {d.recorded} (git checkout {d.recorded})"
    if section == "code" and what.endswith(" uncommitted changes"):
        return f"uncommitted changes in {what.removesuffix(' uncommitted changes')} differ: {d.recorded} then, {d.now} now (git apply the run's code.diff artifact)"
    if d.aspect == "hardware: torch_threads":
        return f"torch threads {d.recorded} -> {d.now} (OMP_NUM_THREADS={d.recorded})"
    if d.aspect == "distributed: world_size":
        return f"world size {d.recorded} -> {d.now} (train on {d.recorded} processes)"
    if section in ("hardware", "distributed", "determinism"):
        return f"{section} {what} {d.recorded} -> {d.now}"
    if section == "data":
        return f"data {what or ''} differ: {d.recorded} then, {d.now} now (use the data the run used)".replace("data  ", "data ")
    if section == "config":
        return f"config.yaml edited at {what}: {d.recorded} when run, {d.now} now (restore it: the params keep what ran)"
    if section == "config resolves differently":
        return f"{what} now resolves to {d.now}, was {d.recorded} ({what}={d.recorded})"
    return f"{d.aspect}: {d.recorded} -> {d.now}"


def _changes(repo: dict[str, Any]) -> str:
    if not repo.get("diff_sha256"):
        return "none"
    files = repo.get("diff_files") or []
    return f"{len(files)} file{'s' if len(files) != 1 else ''}, sha256 {repo['diff_sha256'][:8]}"


def _fingerprint(fingerprint: dict[str, Any] | None) -> str:
    if fingerprint is None:
        return "no fingerprint"
    return ", ".join(f"{split} {_split(value)}" for split, value in sorted(fingerprint.items()))


def _split(value: dict[str, Any] | None) -> str:
    if not value:
        return "absent"
    return f"sha256 {str(value.get('sha256'))[:8]}, {value.get('samples')} samples"


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "none"


def _show(value: Any) -> str:
    if value is None:
        return "-"
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
