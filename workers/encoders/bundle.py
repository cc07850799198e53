"""Formats holding every sample in one file: NDJSON here; npy is the job's samples array itself."""

from __future__ import annotations

import numpy as np

from workers.encoders.base import EncodeContext
from workers.encoders.records import line


def write_ndjson(ctx: EncodeContext, samples: np.ndarray, start: int) -> None:
    with (ctx.directory / f"{ctx.bundle_name}.ndjson").open("ab") as out:
        for offset, sample in enumerate(samples):
            out.write(line(ctx.output, ctx.channel_names, ctx.seed, start + offset, sample))


def write_nothing(ctx: EncodeContext, samples: np.ndarray, start: int) -> None:
    """npy: the archive takes the samples array the worker fills anyway."""
