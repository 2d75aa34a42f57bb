"""The one error type for bad input: configs, overrides, command-line arguments, run ids."""

from __future__ import annotations

from typing import Any

_MISSING = object()


class InputError(Exception):
    """A user-facing input error: bad input found before anything is tracked.

    Carries the key path (``model.init_args.dropout``), the offending value and what was expected, so
    the CLI can print one line and exit 2 without having created a run or a study.

    Example::

        raise InputError("model.init_args.dropout", 1.5, "a float in [0, 1)")
        # -> model.init_args.dropout: got 1.5; expected a float in [0, 1)
    """

    def __init__(self, key: str, value: Any = _MISSING, expected: str | None = None, hint: str | None = None):
        self.key = key
        self.value = value
        self.expected = expected
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        details = []
        if self.value is not _MISSING:
            details.append(f"got {_short(self.value)}")
        if self.expected:
            details.append(f"expected {self.expected}")
        line = f"{self.key}: {'; '.join(details)}" if details else self.key
        if self.hint:
            line += f" ({self.hint})"
        from trainlab.secrets import mask_text

        return mask_text(line)  # a bad URI is named, its password is not

    def fields(self) -> dict[str, Any]:
        """The constructor's arguments, to raise the same error elsewhere (e.g. across a process group)."""
        fields = {"key": self.key, "expected": self.expected, "hint": self.hint}
        if self.value is not _MISSING:
            fields["value"] = self.value
        return fields


# The name the code base grew up with: every config, override and argument error is an input error.
ConfigError = InputError


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    if isinstance(value, str):
        limit = 300  # a path or URI is the whole point of the message: keep it whole
    return text if len(text) <= limit else text[: limit - 3] + "..."
