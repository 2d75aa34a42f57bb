"""Downloading data files with checksum verification; a file appears under its name only once verified.

Plain ``urllib`` rather than a download library: four files, one GET each, and the standard library
already does HTTP(S), proxies (``https_proxy``) and timeouts.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

_CHUNK = 1 << 20


class ChecksumMismatch(ValueError):
    """The downloaded bytes do not have the expected digest (a wrong mirror, a truncated or altered file)."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"sha256:<hex>"`` or ``"md5:<hex>"`` (pip's hash notation) into algorithm and lower-case digest."""
    algorithm, _, digest = checksum.partition(":")
    algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
    size = {"sha256": 64, "md5": 32}.get(algorithm)
    if size is None or len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"checksum {checksum!r}: expected 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'")
    return algorithm, digest


def download_file(url: str, target: str | Path, checksum: str, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``target`` if its bytes match ``checksum``; otherwise leave nothing behind.

    The bytes go to a temporary file beside ``target`` and are renamed into place after the digest
    matched, so an interrupted or rejected download never leaves a partial file under the real name.

    Example::

        download_file("https://example.org/t10k-labels-idx1-ubyte.gz", cache / "t10k-labels-idx1-ubyte.gz",
                      "md5:ec29112dd5afa0611ce80d1b7f02629c")
    """
    algorithm, expected = parse_checksum(checksum)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.new(algorithm, usedforsecurity=False)  # integrity, not security
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise ChecksumMismatch(f"{url}: {algorithm} is {digest.hexdigest()}, expected {expected}")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
