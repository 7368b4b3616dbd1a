"""Crash-safe file writing and JSON-ready values."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file through ``write(fh)`` so that a crash leaves the old file or none.

    The bytes go to a temporary file in the same folder, are synced to disk and moved into
    place with ``os.replace``; on any error (``KeyboardInterrupt`` included) the temporary
    file is removed. Missing parent folders are created.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(v):
    """``v`` as JSON-ready values: numpy scalars as Python ones, tuples as lists, dict keys as
    strings, callables by their qualified name, anything else by its ``repr``."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple | list):
        return [jsonable(i) for i in v]
    if isinstance(v, dict):
        return {str(k): jsonable(i) for k, i in v.items()}
    if isinstance(v, int | float | str | bool) or v is None:
        return v
    if callable(v):
        return getattr(v, "__qualname__", type(v).__name__)
    return repr(v)
