"""Reading IDX files (the MNIST family's format), raw or gzip-compressed, into tensors.

IDX: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per dimension and
the data, big-endian, row-major. Spec: http://yann.lecun.com/exdb/mnist/ ("the IDX file format").
Written here because it is twenty lines and torchvision (which has a reader) is not a dependency.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

# IDX type code -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX file (bad magic number, truncated, wrong shape)."""


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (``.gz`` or raw, told apart by content) into a tensor of its stored shape.

    Example::

        images = read_idx("train-images-idx3-ubyte.gz")  # uint8, (60000, 28, 28)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IdxFormatError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxFormatError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected 0000 + type code + rank)")
    dtype, rank = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated IDX header ({len(raw)} bytes for a rank-{rank} array)")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise IdxFormatError(f"{path}: {len(raw)} bytes, but the header's shape {shape} needs {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    # A native-byte-order copy: torch cannot hold big-endian arrays, nor share read-only bytes.
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def write_idx(path: str | Path, tensor: torch.Tensor | np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as an IDX file (gzip-compressed when ``compress`` or when the name ends in ``.gz``).

    The inverse of :func:`read_idx`; used to make small real-format files (tests, custom datasets).
    """
    path = Path(path)
    array = tensor.numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    code = next((c for c, d in _DTYPES.items() if d.newbyteorder("=") == array.dtype.newbyteorder("=")), None)
    if code is None:
        raise IdxFormatError(f"IDX cannot store dtype {array.dtype}; expected one of uint8, int8, int16, int32, float32, float64")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(_DTYPES[code], copy=False).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
