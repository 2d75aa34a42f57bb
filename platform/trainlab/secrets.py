"""Credentials stay where they were typed: the one masking function for everything trainlab prints or records.

A URI may carry a password (``postgresql://me:PASSWORD@db/optuna``, ``http://me:PASSWORD@mlflow:5000``).
Before a URI, an argv, an error message, a tag, a param, an Optuna attribute or an artifact leaves trainlab,
it passes through :func:`mask_text` (or :func:`mask_uri` for one URI): the password becomes ``***``, the rest
stays readable. Environment variables (``MLFLOW_TRACKING_PASSWORD``, ``PGPASSWORD``, ...) are not searched
for: their values are never recorded (see ``RECORDED_ENVIRONMENT_VARIABLES`` in tracking/environment.py), and
replacing a value such as ``postgres`` wherever it appears would garble ordinary text.

Example::

    mask_uri("postgresql://me:s3cret@db:5432/optuna")   # 'postgresql://me:***@db:5432/optuna'
    mask_text("cannot reach http://me:s3cret@host:5000") # 'cannot reach http://me:***@host:5000'

The supported ways to give a password without writing it in a URI (so that it is not in the shell's history
or in ``ps`` either) are MLflow's ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (or
``MLFLOW_TRACKING_TOKEN``) and PostgreSQL's ``PGPASSWORD`` or ``~/.pgpass``; see the README.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

MASK = "***"
# scheme://user:password@ : the password is anything up to the last "@" before the host (no spaces).
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*):(?P<password>[^\s'\"]*?)@(?=[^@\s'\"]*(?:[/\s'\"?#]|$))")
# ...?password=...&token=... in a query string, or password=... in a libpq connection string
_QUERY_SECRET = re.compile(r"(?P<head>(?:(?<=[?&\s])|^)(?:password|passwd|pwd|token|access_token|secret|api_key|apikey)=)(?P<value>[^&\s'\"#]+)", re.IGNORECASE)


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its user part (and any ``password=`` query value) replaced by ``***``."""
    return mask_text(uri)


def mask_text(text: str) -> str:
    """``text`` with every URI password (and ``password=`` value) replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    masked = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", masked)


def without_credentials(uri: str) -> str:
    """``uri`` without its user part at all (``http://me:pw@host:5000`` -> ``http://host:5000``): for links,
    which a browser would otherwise try to log in with."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def mask_argv(argv: Iterable[str]) -> list[str]:
    """A command line fit to record: each argument through :func:`mask_text`."""
    return [mask_text(str(arg)) for arg in argv]


def mask_values(values: dict[str, Any]) -> dict[str, Any]:
    """A mapping (tags, params, attributes) with every string value through :func:`mask_text`."""
    return {key: mask_text(value) if isinstance(value, str) else value for key, value in values.items()}


class MaskedStream:
    """A text stream that writes through :func:`mask_text`: what a library prints about a URI (an MLflow or
    SQLAlchemy message, a warning) is masked as well as trainlab's own lines."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class masked_terminal:
    """For the life of a command: ``sys.stdout`` and ``sys.stderr`` write through :func:`mask_text`."""

    def __enter__(self) -> "masked_terminal":
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (s if isinstance(s, MaskedStream) else MaskedStream(s) for s in self._saved)
        return self

    def __exit__(self, *exc_info) -> None:
        sys.stdout, sys.stderr = self._saved
