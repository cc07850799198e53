"""Per-record signal formats: WFDB (via the wfdb library), CSV, and the original package's .asc."""

from __future__ import annotations

import numpy as np
import wfdb

from workers.encoders.base import EncodeContext

# WFDB stores digital units with a gain per physical unit; microvolts are kept as 1 uV per unit.
_WFDB_UNITS = {"uV": ("mV", 1000.0), "mV": ("mV", 1.0)}


def write_wfdb(ctx: EncodeContext, samples: np.ndarray, start: int) -> None:
    units, gain = _WFDB_UNITS.get(ctx.output.unit, (ctx.output.unit, 1.0))
    count = len(ctx.channel_names)
    for offset, sample in enumerate(samples):
        wfdb.wrsamp(
            ctx.stem(start + offset),
            fs=ctx.output.sampling_rate,
            units=[units] * count,
            sig_name=ctx.channel_names,
            d_signal=sample.astype(np.int64),
            fmt=["16"] * count,
            adc_gain=[gain] * count,
            baseline=[0] * count,
            write_dir=str(ctx.directory),
        )


def write_csv(ctx: EncodeContext, samples: np.ndarray, start: int) -> None:
    header = ",".join(ctx.channel_names)
    for offset, sample in enumerate(samples):
        np.savetxt(ctx.directory / f"{ctx.stem(start + offset)}.csv", sample, fmt="%d", delimiter=",", header=header, comments="")


def write_asc(ctx: EncodeContext, samples: np.ndarray, start: int) -> None:
    """deepfake-ecg's layout: rows of space-separated integers, one column per lead, no header."""
    for offset, sample in enumerate(samples):
        np.savetxt(ctx.directory / f"{ctx.stem(start + offset)}.asc", sample, fmt="%d")
