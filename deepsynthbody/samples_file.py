"""A job's samples as one .npy file, written by row ranges and read while it fills.

Plain positional reads and writes, not a memory map: a worker's and the API's resident memory stay
flat however large the job (mapped pages of a 1.6 GB array would count against both).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np


class SamplesFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            self.shape, _, self.dtype = read_header(fh)
            self.offset = fh.tell()
        self.row_items = int(np.prod(self.shape[1:]))
        self.row_bytes = self.row_items * self.dtype.itemsize

    @classmethod
    def create(cls, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> SamplesFile:
        """Open the file, creating it full-size (sparse) unless another chunk's worker already did."""
        if not path.exists():
            staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            np.lib.format.open_memmap(staging, mode="w+", dtype=dtype, shape=shape).flush()
            try:
                os.link(staging, path)  # atomic: exactly one creator's file becomes the array
            except FileExistsError:
                pass
            finally:
                staging.unlink()
        return cls(path)

    def write(self, start: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.offset + start * self.row_bytes)
        finally:
            os.close(fd)  # on a network file system, close is what publishes the rows to other machines

    def read(self, start: int, count: int) -> np.ndarray:
        rows = np.fromfile(self.path, dtype=self.dtype, count=count * self.row_items,
                           offset=self.offset + start * self.row_bytes)
        return rows.reshape(count, *self.shape[1:])
