"""Per-record formats encoded in the worker's processes, each batch cut into one piece per process.

A GPU makes ECGs faster than one core encodes them (H100: 26,000 ECG/s in fp32; one core encodes 250 (dicom) to 1,600
(wfdb, csv) a second, scripts/encoding-processes.py), so a GPU worker encodes in the processes it also measures in (`workers.measuring_processes`: the
batch shared in memory, not pickled). Each process runs the format's own writer on its piece into a zip of its own
(`workers.archive.MemberZip`), in the chunk's `.pieces` folder; the worker's encoder thread appends the pieces, in
order, to the chunk's zip entry by entry as bytes (`MemberZip.append`). An entry does not depend on the zip it was
made in, so the chunk's part, and the archive, are the bytes the encoder thread alone would have written (a test
holds every per-record format, annotated too, to that). A process keeps its writer between the pieces of a chunk,
as the encoder thread would (wfdb writes only each job's first header in full).

A CPU worker's cores run its inference lanes, so it encodes in its encoder thread unless `DSB_ENCODING_PROCESSES`
says otherwise.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deepsynthbody.core.settings import Settings, usable_cores
from workers import archive, measuring_processes
from workers.encoders import ENCODERS, BatchWriter, EncodeContext

# the formats whose writer only adds each sample's files to the chunk's zip. Not json: one core writes its lines at
# about 5,000 ECG/s (orjson), and when tried in 2 processes on 2 cores it was slower (0.92x), its lines being copied
# once more; nor npy, which encodes nothing.
PER_RECORD = frozenset({"wfdb", "csv", "asc", "edf", "dicom", "png", "pdf"})
PIECES_SUFFIX = ".pieces"  # a chunk's folder of encoded pieces in the job's parts folder


def processes(settings: Settings, provider: str, fmt: str) -> int:
    """How many processes a job in `fmt` encodes in on this worker; 0: its encoder thread alone."""
    if fmt not in PER_RECORD or not measuring_processes.available():
        return 0
    chosen = settings.encoding_processes
    if chosen is None:
        chosen = (settings.ort_threads or usable_cores()) if provider == "CUDAExecutionProvider" else 0
    return chosen if chosen > 1 else 0


class PieceWriter:
    """The format's writer, run on each batch's pieces in `count` processes; their zips appended to the chunk's."""

    def __init__(self, fmt: str, ctx: EncodeContext, count: int, compression: str) -> None:
        if not isinstance(ctx.members, archive.MemberZip):
            raise TypeError("pieces are appended to a chunk's MemberZip")
        self.fmt, self.ctx, self.count, self.compression = fmt, ctx, count, compression
        self.members: archive.MemberZip = ctx.members
        self.folder = ctx.part(PIECES_SUFFIX)
        shutil.rmtree(self.folder, ignore_errors=True)  # what a stopped try of this chunk left
        self.folder.mkdir(parents=True)
        # what the processes build their own writer from: everything but where members go and the measurements
        self.blueprint = dataclasses.replace(ctx, members=_Sink(), measurements={})

    def write(self, samples: np.ndarray, start: int) -> None:
        measured = {index: self.ctx.measurements[index] for index in range(start, start + len(samples))
                    if index in self.ctx.measurements}
        pieces = measuring_processes.each_piece(_encode, samples, self.count, start, self.fmt, self.blueprint,
                                                measured, str(self.folder), self.compression)
        for piece in pieces:
            self.members.append(Path(piece))


class _Sink:
    """Where a process's writer adds members: the zip of the piece it is encoding."""

    def __init__(self) -> None:
        self.target: archive.MemberZip | None = None

    def add(self, name: str, data: bytes) -> None:
        if self.target is None:
            raise RuntimeError(f"{name}: added outside a piece")
        self.target.add(name, data)


_writers: dict[tuple[Any, ...], tuple[BatchWriter, _Sink, EncodeContext]] = {}  # a process's, for its current chunk


def _encode(samples: np.ndarray, first: int, start: int, fmt: str, blueprint: EncodeContext,
            measured: dict[int, dict[str, Any]], folder: str, compression: str) -> str:
    """In a process: samples start+first .. encoded into a zip of their own in `folder`; its path."""
    key = (folder, fmt)  # the folder is one job's chunk's
    if key not in _writers:
        _writers.clear()  # a new chunk: the last one's writer is done with
        sink = _Sink()
        ctx = dataclasses.replace(blueprint, members=sink, measurements={})
        _writers[key] = (ENCODERS[fmt](ctx), sink, ctx)
    writer, sink, ctx = _writers[key]
    ctx.measurements.clear()
    ctx.measurements.update(measured)
    path = Path(folder) / f"{start + first:012d}.zip"
    with archive.MemberZip(path, compression) as members:
        sink.target = members
        writer.write(samples, start + first)
    sink.target = None
    return str(path)
