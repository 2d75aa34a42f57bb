"""Turns jsonargparse's nested, multi-line validation messages into one :class:`ConfigError` line.

jsonargparse reports a bad value inside a subclass as a tree ("Parser key "model" → Problem with given
class_path → Parser key "dropout" → Not of type …"). Users need the leaf with its full key path; nothing
in jsonargparse exposes that structurally, so we read it off the message.
"""

from __future__ import annotations

import difflib
import inspect
import re

from trainlab.errors import _MISSING, ConfigError

_FRIENDLY_TYPES = {
    "UnitFraction": "a number in [0, 1)",
    "PositiveInt": "an integer > 0",
    "NonNegativeInt": "an integer >= 0",
    "PositiveFloat": "a number > 0",
    "NonNegativeFloat": "a number >= 0",
    "OpenUnitInterval": "a number in (0, 1)",
    "NotEmptyStr": "a non-empty string",
}
_STRUCTURAL = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "- Expected a <class 'NoneType'>",
)


def translate(message: str, document: dict | None = None) -> ConfigError:
    """The one-line :class:`ConfigError` for jsonargparse's ``message``; ``document`` (the run config it was
    given) supplies the offending value where the message leaves it out."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    path: list[str] = []
    class_path = None
    given = None
    leaf = None
    for line in lines:
        if match := re.match(r'Parser key "([^"]+)"', line):
            path.append(match.group(1))
        elif match := re.match(r"- Problem with given class_path '([^']+)'", line):
            class_path = match.group(1)
            path.append("init_args")
        elif line.startswith("Given value:"):
            given = line.removeprefix("Given value:").strip()
        elif leaf is None and not line.startswith(_STRUCTURAL):
            leaf = line.removeprefix("- ")
    key = ".".join(path) or "config"
    leaf = leaf or message.splitlines()[0]
    given = _descend(given, path[1:]) if given is not None else None
    if document is not None and _lookup(document, key) is not _MISSING:
        given = _lookup(document, key)

    if match := re.match(r"Option '([^']+)' is not accepted", leaf):
        return _unknown_key(f"{key}.{match.group(1)}", match.group(1), class_path, document=document)
    if match := re.match(r"Group '([^']+)' does not accept option '([^']+)'", leaf):
        return _unknown_key(f"{match.group(1)}.{match.group(2)}", match.group(2), None, group=match.group(1), document=document)
    if class_path is None and "Does not validate against any of the Union subtypes" in message and re.match(r"(Expected a <class |Expected a typing\.Literal|Not a valid subclass of )", leaf):
        return ConfigError(key, given if given is not None else _missing(), _union_expectation(lines, key))
    if class_path and re.match(r"No module named|module '.+' has no attribute|cannot import", leaf):
        return ConfigError(key.removesuffix(".init_args") + ".class_path", class_path, "an importable class path", hint=leaf)
    if match := re.match(r"Not of type (\w+): (.+?) does not conform to restriction (.+)", leaf):
        expected = _FRIENDLY_TYPES.get(match.group(1), f"{match.group(1)} ({match.group(3)})")
        return ConfigError(key, _literal(match.group(2)), expected)
    if match := re.match(r"Not of type (\w+)", leaf):
        return ConfigError(key, given if given is not None else _missing(), _FRIENDLY_TYPES.get(match.group(1), match.group(1)))
    if match := re.match(r"Expected a typing\.Literal\[(.+)\]\. Got value: (.+)", leaf):
        return ConfigError(key, _literal(match.group(2)), f"one of {match.group(1)}")
    if match := re.match(r"Expected a dot import path string: (.+)", leaf):
        return ConfigError(
            f"{key}.class_path" if not key.endswith("class_path") else key,
            match.group(1),
            "a class name from models/datamodules/torch.optim or a full import path such as mypkg.MyModel",
        )
    if match := re.match(r"Import path (\S+) does not correspond to a subclass of (\S+)", leaf):
        return ConfigError(f"{key}.class_path", match.group(1), f"a subclass of {match.group(2).rstrip('.')}")
    if match := re.match(r"Expected a <class '(\w+)'>\. Got value: (.+)", leaf):
        return ConfigError(key, _literal(match.group(2)), _a(match.group(1)))
    if match := re.match(r"Expected a <class '(\w+)'>", leaf):
        return ConfigError(key, given if given is not None else _missing(), _a(match.group(1)))
    if match := re.match(r"Not a valid subclass of (\w+)", leaf):
        return ConfigError(key, given if given is not None else _missing(), _subclass_expectation(match.group(1)))
    if match := re.match(r'Key "([^"]+)" is required but not included in config object or its value is None', leaf):
        return ConfigError(match.group(1), expected="a value (this key is required)")
    # A message this module does not know yet: still a sentence, with jsonargparse's words as the reason.
    return ConfigError(key, given if given is not None else _missing(), "a value this key accepts", hint=leaf.rstrip("."))


def _union_expectation(lines: list[str], key: str) -> str:
    """``a bool or an int``, ``one of 64, 32, 16, '16-mixed' or null``: every alternative of a Union type."""
    literals: list[str] = []
    others: list[str] = []
    for line in lines:
        if match := re.match(r"- Expected a typing\.Literal\[(.+)\]$", line):
            literals.append(match.group(1))
        elif match := re.match(r"- Expected a <class '(\w+)'>$", line):
            if match.group(1) != "NoneType":
                others.append(_a(match.group(1)))
            elif key not in ("model", "data"):  # those two are required: null is no choice
                others.append("null")
        elif match := re.match(r"- Not a valid subclass of (\w+)", line):
            others.append(_subclass_expectation(match.group(1)))
    choices = ([f"one of {', '.join(literals)}"] if literals else []) + others
    if not choices:
        return "a value this key accepts"
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def _subclass_expectation(base: str) -> str:
    return f"a {base} class (its name, or a mapping with class_path and init_args)"


def _unknown_key(key: str, option: str, class_path: str | None, group: str | None = None, document: dict | None = None) -> ConfigError:
    accepted = _accepted_options(class_path, group)
    close = difflib.get_close_matches(option, accepted, n=1)
    hint = f"did you mean '{close[0]}'?" if close else None
    owner = class_path.rpartition(".")[2] if class_path else group
    expected = f"a key that {owner} accepts" if owner else "a known key"
    if accepted:
        expected += f" ({', '.join(accepted[:12])}{', ...' if len(accepted) > 12 else ''})"
    value = _lookup(document, key) if document is not None else _MISSING
    return ConfigError(key, value, expected=expected, hint=hint)


def _lookup(document: dict, key: str):
    node = document
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _accepted_options(class_path: str | None, group: str | None) -> list[str]:
    try:
        if group == "trainer":
            import lightning

            target = lightning.Trainer
        elif class_path:
            module, _, name = class_path.rpartition(".")
            target = getattr(__import__(module, fromlist=[name]), name)
        else:
            return []
        names: list[str] = []
        for cls in inspect.getmro(target) if inspect.isclass(target) else [target]:
            init = cls.__init__ if inspect.isclass(cls) else cls
            for param in inspect.signature(init).parameters.values():
                if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and param.name not in ("self", "params"):
                    if param.name not in names:
                        names.append(param.name)
            if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
                break
        return names
    except Exception:
        return []


def _descend(given_text: str, path: list[str]):
    """The offending value: jsonargparse prints the whole section it was given; walk down to the key."""
    import ast

    try:
        value = ast.literal_eval(given_text)
    except (ValueError, SyntaxError):
        return _literal(given_text)
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return value
        value = value[part]
    return value


def _a(type_name: str) -> str:
    return f"{'an' if type_name[0] in 'aeiou' else 'a'} {type_name}"


def _literal(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except Exception:
        return text


def _missing():
    return _MISSING


def trainer_error(exc: BaseException, arguments: dict) -> ConfigError:
    """One line for a ``lightning.Trainer(**arguments)`` that Lightning refused (MisconfigurationException and
    friends): the trainer key its message names, the value given, Lightning's reason as the hint."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    # Lightning writes the key it refuses as `key=...` or `key`; a bare word (cpu accelerator) is the last resort.
    for pattern in (r"(?<![\w.]){}=", r"`{}`", r"(?<![\w.]){}(?!\w)"):
        for name in arguments:
            if re.search(pattern.format(re.escape(name)), reason):
                return ConfigError(f"trainer.{name}", arguments[name], "a value Lightning accepts on this machine", hint=reason)
    return ConfigError("trainer", expected="settings Lightning accepts on this machine", hint=reason)
