"""A job's samples as one .npy array, written by row ranges and read while it fills.

Plain positional reads and writes, not a memory map: a worker's and the API's resident memory stay
flat however large the job (mapped pages of a 1.6 GB array would count against both).

The array may sit behind a zip local file header (`prefix`): an npy job's file is then its archive's first
member in place, and finishing the archive means filling in that header and writing the directory after
the array, not copying the array (`workers.archive.write`).
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

import numpy as np

_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length (APPNOTE 4.3.7)


def data_offset(head: bytes) -> int:
    """Where the .npy bytes start in a file beginning with `head` (its first 30 bytes at least)."""
    if head[:4] != b"PK\x03\x04":
        return 0
    _, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack_from(head)
    return _ZIP_LOCAL_HEADER.size + name_length + extra_length


class SamplesFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            self.start = data_offset(fh.read(_ZIP_LOCAL_HEADER.size))  # 0, or the end of a zip header
            fh.seek(self.start)
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            self.shape, _, self.dtype = read_header(fh)
            self.offset = fh.tell()
        self.row_items = int(np.prod(self.shape[1:]))
        self.row_bytes = self.row_items * self.dtype.itemsize

    @property
    def end(self) -> int:
        """The end of the .npy bytes in the file."""
        return self.offset + self.shape[0] * self.row_bytes

    @classmethod
    def create(cls, path: Path, dtype: np.dtype, shape: tuple[int, ...], prefix: bytes = b"") -> SamplesFile:
        """Open the file, creating it full-size (sparse) unless another chunk's worker already did;
        `prefix` (a zip local header) goes before the array."""
        if not path.exists():
            staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
            try:
                with staging.open("xb") as fh:
                    fh.write(prefix)
                    try:
                        np.lib.format.write_array_header_1_0(fh, header)
                    except ValueError:  # too large a header for version 1.0 (numpy checks before writing)
                        np.lib.format.write_array_header_2_0(fh, header)
                    fh.truncate(fh.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)
                os.link(staging, path)  # atomic: exactly one creator's file becomes the array
            except FileExistsError:
                pass
            finally:
                staging.unlink(missing_ok=True)
        return cls(path)

    def write(self, start: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)  # written from its own buffer, not a copy
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.offset + start * self.row_bytes)
        finally:
            os.close(fd)  # on a network file system, close is what publishes the rows to other machines

    def read(self, start: int, count: int) -> np.ndarray:
        rows = np.fromfile(self.path, dtype=self.dtype, count=count * self.row_items,
                           offset=self.offset + start * self.row_bytes)
        return rows.reshape(count, *self.shape[1:])
