"""Formats holding every sample in one file: NDJSON here; npy is the job's samples array itself."""

from __future__ import annotations

import numpy as np

from workers.encoders.base import EncodeContext
from workers.encoders.records import line


class NdjsonWriter:
    def __init__(self, ctx: EncodeContext) -> None:
        self.ctx = ctx
        self.path = ctx.part(".ndjson")
        self.path.unlink(missing_ok=True)  # a retried chunk starts its piece again

    def write(self, samples: np.ndarray, start: int) -> None:
        with self.path.open("ab") as out:
            out.writelines(line(self.ctx.output, self.ctx.channel_names, self.ctx.seed, start + offset, sample,
                                self.ctx.measurements.get(start + offset))
                           for offset, sample in enumerate(samples))


class NothingWriter:
    """npy: the archive takes the samples array the worker fills anyway."""

    def __init__(self, ctx: EncodeContext) -> None:
        pass

    def write(self, samples: np.ndarray, start: int) -> None:
        pass
