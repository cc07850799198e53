"""The data dir's disk: how much room is left on it."""

from __future__ import annotations

import shutil
from pathlib import Path


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path`, or would once it is made (the data dir is made by the
    first job): the nearest existing folder above it. OSError if that file system cannot be read."""
    where = Path(path).resolve()
    while not where.exists() and where != where.parent:
        where = where.parent
    return shutil.disk_usage(where).free
