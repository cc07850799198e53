"""Per-record signal formats: WFDB (via the wfdb library), CSV, and the original package's .asc."""

from __future__ import annotations

import numpy as np
import wfdb

from workers.encoders.base import EncodeContext
from workers.encoders.text import int16_rows

# WFDB stores digital units with a gain per physical unit; microvolts are kept as 1 uV per unit.
_WFDB_UNITS = {"uV": ("mV", 1000.0), "mV": ("mV", 1.0)}


class WfdbWriter:
    """One record per sample, written by wfdb; its header fields are validated once per job, not per record."""

    def __init__(self, ctx: EncodeContext) -> None:
        self.ctx = ctx
        self.units, self.gain = _WFDB_UNITS.get(ctx.output.unit, (ctx.output.unit, 1.0))
        self._fields: tuple[list[str], dict[str, list[bool]]] | None = None

    def _record(self, name: str, sample: np.ndarray) -> wfdb.Record:
        count = len(self.ctx.channel_names)
        record = wfdb.Record(
            record_name=name, d_signal=sample, fs=self.ctx.output.sampling_rate, fmt=["16"] * count,
            units=[self.units] * count, sig_name=self.ctx.channel_names, adc_gain=[self.gain] * count,
            baseline=[0] * count,
        )
        record.set_d_features()  # init values and checksums of this record
        record.set_defaults()
        return record

    def write(self, samples: np.ndarray, start: int) -> None:
        directory = str(self.ctx.directory)
        for offset, sample in enumerate(samples):
            record = self._record(self.ctx.stem(start + offset), sample.astype(np.int64))
            if self._fields is None:
                record.wrsamp(write_dir=directory)  # the library's full checks, on the first record
                record_fields, signal_fields = record.get_write_fields()
                signal_fields.pop("samps_per_frame", None)
                self._fields = (record_fields, signal_fields)
            else:
                record.wr_header_file(*self._fields, write_dir=directory)
                record.wr_dat_files(write_dir=directory)


class TextWriter:
    """One text file per sample: a row per time step, a column per channel."""

    def __init__(self, ctx: EncodeContext, suffix: str, delimiter: str, header: bool) -> None:
        self.ctx, self.suffix, self.delimiter = ctx, suffix, delimiter
        self.header = (delimiter.join(ctx.channel_names) + "\n").encode() if header else b""

    def write(self, samples: np.ndarray, start: int) -> None:
        for offset, sample in enumerate(samples):
            path = self.ctx.directory / f"{self.ctx.stem(start + offset)}.{self.suffix}"
            path.write_bytes(self.header + int16_rows(sample, self.delimiter))


def csv_writer(ctx: EncodeContext) -> TextWriter:
    return TextWriter(ctx, "csv", ",", header=True)


def asc_writer(ctx: EncodeContext) -> TextWriter:
    """deepfake-ecg's layout: rows of space-separated integers, one column per lead, no header."""
    return TextWriter(ctx, "asc", " ", header=False)
