"""The ``search_space`` section: what a study samples, and how sampled values land in the run config.

Each entry addresses a key of the run config by its dotted path and says how to sample it::

    search_space:
      model.init_args.dropout: {low: 0.0, high: 0.5}                 # float, linear
      optimizer.init_args.weight_decay: {low: 1.0e-6, high: 1.0e-2, log: true}
      data.init_args.batch_size: {type: int, low: 32, high: 128, step: 32}
      model.init_args.hidden_sizes: {choices: [[64], [128, 64]]}    # any YAML value can be a choice
      optimizer.class_path:                                         # a conditional sub-space:
        choices:                                                    # each choice brings its own params
          torch.optim.SGD:
            optimizer.init_args.lr: {low: 1.0e-3, high: 0.3, log: true}
            optimizer.init_args.momentum: {low: 0.0, high: 0.99}
          torch.optim.Adam:
            optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}

Optuna names a parameter by its path; a parameter inside a sub-space is named ``path@Choice``
(``optimizer.init_args.lr@SGD``), so each optimizer's learning rate is its own dimension for the sampler
and in the plots.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from trainlab.class_paths import find_class, init_parameters
from trainlab.config.experiment import RUN_SECTIONS, set_dotted
from trainlab.errors import ConfigError

_NUMERIC_FIELDS = ("type", "low", "high", "log", "step")
_PRIMITIVE = (str, int, float, bool, type(None))
_SEARCHABLE_SECTIONS = tuple(s for s in RUN_SECTIONS if s != "tracking")


@dataclass(frozen=True)
class FloatParam:
    path: str
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def probe_values(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class IntParam:
    path: str
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step)

    def probe_values(self) -> tuple[int, int]:
        return self.low, self.low + (self.high - self.low) // self.step * self.step


@dataclass(frozen=True)
class ChoiceParam:
    """A categorical; ``branches`` maps a choice to the sub-space it brings (empty when it brings none).

    Optuna only stores None/bool/int/float/str choices, so lists and mappings travel as JSON text.
    """

    path: str
    name: str
    choices: tuple[Any, ...]
    branches: dict[Any, "SearchSpace"] = field(default_factory=dict)

    @property
    def optuna_choices(self) -> tuple[Any, ...]:
        return tuple(_encode(choice) for choice in self.choices)

    def suggest(self, trial) -> Any:
        return _decode(trial.suggest_categorical(self.name, self.optuna_choices))

    def probe_values(self) -> tuple[Any, Any]:
        return self.choices[0], self.choices[-1]


Param = FloatParam | IntParam | ChoiceParam


@dataclass(frozen=True)
class SearchSpace:
    """Parsed ``search_space`` section. ``sample(trial)`` → ``{dotted path: value}``."""

    params: tuple[Param, ...] = ()

    def sample(self, trial) -> dict[str, Any]:
        """Ask ``trial`` for every parameter of this space and of the sub-spaces the choices select."""
        values: dict[str, Any] = {}
        for param in self.params:
            value = param.suggest(trial)
            values[param.path] = value
            if isinstance(param, ChoiceParam) and param.branches.get(_key(value)):
                values.update(param.branches[_key(value)].sample(trial))
        return values

    def paths(self) -> set[str]:
        """Every dotted path this space (sub-spaces included) may set."""
        found = set()
        for param in self.params:
            found.add(param.path)
            if isinstance(param, ChoiceParam):
                for branch in param.branches.values():
                    found |= branch.paths()
        return found

    def probes(self) -> Iterator[tuple[dict[str, Any], str]]:
        """Assignments that together visit every sub-space with every parameter at both ends of its range.

        Yields ``(values, where)``; ``where`` names the choices that selected the sub-space, for messages.
        """
        for end in (0, 1):
            yield from self._probes(end, "")

    def _probes(self, end: int, where: str) -> Iterator[tuple[dict[str, Any], str]]:
        base = {param.path: param.probe_values()[end] for param in self.params}
        yield base, where
        for param in self.params:
            if not isinstance(param, ChoiceParam):
                continue
            for choice in param.choices:
                branch = param.branches.get(_key(choice))
                if branch is None:
                    continue
                label = f"{where}, " if where else ""
                for values, inner in branch._probes(end, f"{label}{param.path}={choice}"):
                    yield {**base, param.path: choice, **values}, inner


def parse_search_space(section: Any, prefix: str = "search_space", name_suffix: str = "") -> SearchSpace:
    """Check the section's shape and ranges; raise a one-line :class:`ConfigError` naming the entry."""
    if section is None:
        raise ConfigError(prefix, expected="a mapping of dotted config keys to ranges, e.g. model.init_args.dropout: {low: 0.0, high: 0.5}")
    if not isinstance(section, dict) or not section:
        raise ConfigError(prefix, section, "a non-empty mapping of dotted config keys to ranges or choices")
    params = []
    for path, spec in section.items():
        where = f"{prefix}.{path}"
        if not isinstance(path, str) or path.split(".")[0] not in _SEARCHABLE_SECTIONS:
            raise ConfigError(where, expected=f"a dotted key inside a run section ({', '.join(_SEARCHABLE_SECTIONS)})")
        params.append(_parse_param(path, path + name_suffix, spec, where))
    _check_no_overlap(params, prefix)
    return SearchSpace(tuple(params))


def apply_params(run: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``run`` with each sampled value set at its dotted path.

    A sampled ``...class_path`` is applied first; init_args the new class does not accept are dropped
    (as LightningCLI does when a class_path is overridden), so ``betas`` set for Adam in the base file
    does not break a trial that picked SGD.
    """
    result = copy.deepcopy(run)
    ordered = sorted(values.items(), key=lambda item: not item[0].endswith("class_path"))
    for path, value in ordered:
        if path.endswith("class_path"):
            _drop_foreign_init_args(result, path, value)
        set_dotted(result, path, copy.deepcopy(value))
    return result


# -- parsing -------------------------------------------------------------------------------------------
def _parse_param(path: str, name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(where, spec, "a mapping such as {low: 0.0, high: 0.5}, {low: 1.0e-4, high: 0.1, log: true} or {choices: [...]}")
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}", expected="nothing else next to choices")
        return _parse_choices(path, name, spec["choices"], where)
    unknown = sorted(set(spec) - set(_NUMERIC_FIELDS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", expected=f"one of {', '.join(_NUMERIC_FIELDS)} (or choices)")
    kind = spec.get("type", "float")
    if kind not in ("float", "int"):
        raise ConfigError(f"{where}.type", kind, "float or int (categoricals use choices: [...])")
    for bound in ("low", "high"):
        if bound not in spec:
            raise ConfigError(where, spec, f"both low and high (missing {bound})")
        if not _is_number(spec[bound]) or (kind == "int" and not _is_integral(spec[bound])):
            raise ConfigError(f"{where}.{bound}", spec[bound], "an integer" if kind == "int" else "a number")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", log, "true or false")
    if not low < high:
        raise ConfigError(where, f"low={low}, high={high}", "low < high")
    if log and low <= 0:
        raise ConfigError(f"{where}.low", low, "a number > 0 for a log scale")
    if step is not None:
        if not _is_number(step) or step <= 0 or (kind == "int" and not _is_integral(step)):
            raise ConfigError(f"{where}.step", step, "an integer > 0" if kind == "int" else "a number > 0")
        if log and not (kind == "int" and step == 1):
            raise ConfigError(f"{where}.step", step, "no step together with log: true (Optuna samples one or the other)")
        if step > high - low:
            raise ConfigError(f"{where}.step", step, f"a step no larger than high - low ({high - low})")
    if kind == "int":
        return IntParam(path, name, int(low), int(high), log, int(step or 1))
    return FloatParam(path, name, float(low), float(high), log, float(step) if step is not None else None)


def _parse_choices(path: str, name: str, choices: Any, where: str) -> ChoiceParam:
    if isinstance(choices, dict):
        if not choices:
            raise ConfigError(f"{where}.choices", choices, "a non-empty list of values, or a mapping of value -> sub-space")
        branches = {}
        labels = _labels(list(choices))
        for choice, sub in choices.items():
            if sub is None or sub == {}:
                continue
            sub_where = f"{where}.choices.{choice}"
            branch = parse_search_space(sub, sub_where, name_suffix=f"@{labels[choice]}")
            branches[_key(choice)] = branch
        return ChoiceParam(path, name, tuple(choices), branches)
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}.choices", choices, "a non-empty list of values")
    encoded = [_encode(choice) for choice in choices]
    if len(set(map(repr, encoded))) != len(encoded):
        raise ConfigError(f"{where}.choices", choices, "distinct values")
    return ChoiceParam(path, name, tuple(choices))


def _check_no_overlap(params: list[Param], prefix: str) -> None:
    """A key searched for all trials cannot also belong to one choice's sub-space: which would win?"""
    shared = {param.path for param in params}
    for param in params:
        for choice, branch in getattr(param, "branches", {}).items():
            for path in sorted(branch.paths() & shared):
                raise ConfigError(
                    f"{prefix}.{param.path}.choices.{choice}.{path}",
                    expected="a key not also searched for all trials (remove it there or here)",
                )


def _labels(choices: list[Any]) -> dict[Any, str]:
    """``torch.optim.SGD`` → ``SGD`` for parameter names, unless two choices would share a label."""
    short = {choice: str(choice).rsplit(".", 1)[-1] for choice in choices}
    if len(set(short.values())) == len(short):
        return short
    return {choice: str(choice) for choice in choices}


def _drop_foreign_init_args(run: dict[str, Any], class_path_key: str, class_path: Any) -> None:
    from trainlab.config.experiment import get_dotted

    init_key = class_path_key[: -len("class_path")] + "init_args"
    init_args = get_dotted(run, init_key)
    if not isinstance(init_args, dict) or get_dotted(run, class_path_key) == class_path:
        return
    accepted = _init_parameters(class_path)
    if accepted is None:
        return
    for name in list(init_args):
        if name not in accepted:
            del init_args[name]


def _init_parameters(class_path: Any) -> set[str] | None:
    """Names the class's __init__ accepts, or None when unknown (short name, missing class, ``**kwargs``)."""
    cls = find_class(class_path)
    if cls is None:
        return None
    names, open_ended = init_parameters(cls)
    return None if open_ended else names


def _encode(choice: Any) -> Any:
    return choice if isinstance(choice, _PRIMITIVE) else json.dumps(choice)


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _key(choice: Any) -> Any:
    return json.dumps(choice, sort_keys=True) if not isinstance(choice, _PRIMITIVE) else choice


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integral(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()
