"""Per-record signal formats: WFDB (via the wfdb library), CSV, and the original package's .asc."""

from __future__ import annotations

import copy

import numpy as np
import wfdb

from workers.encoders.base import EncodeContext
from workers.encoders.text import int16_rows

# WFDB stores digital units with a gain per physical unit; microvolts are kept as 1 uV per unit.
_WFDB_UNITS = {"uV": ("mV", 1000.0), "mV": ("mV", 1.0)}


class WfdbWriter:
    """One record per sample. wfdb writes each job's first record, with all the library's checks; the other
    records share its header but for the record name, file names, initial values and checksums, so their
    headers are that header's lines with those four fields replaced (the library's per-record header code
    does hundreds of pandas lookups: about 10 ms a record). Data files are written by wfdb for every record,
    into the chunk's scratch folder, and move from there into the archive. A test holds every record
    byte-identical to `wfdb.wrsamp`."""

    def __init__(self, ctx: EncodeContext) -> None:
        self.ctx = ctx
        self.units, self.gain = _WFDB_UNITS.get(ctx.output.unit, (ctx.output.unit, 1.0))
        self.scratch = ctx.part(".wfdb")
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._first: wfdb.Record | None = None
        self._header: _HeaderTemplate | None = None

    def _record(self, name: str, sample: np.ndarray) -> wfdb.Record:
        count = len(self.ctx.channel_names)
        record = wfdb.Record(
            record_name=name, d_signal=sample, fs=self.ctx.output.sampling_rate, fmt=["16"] * count,
            units=[self.units] * count, sig_name=self.ctx.channel_names, adc_gain=[self.gain] * count,
            baseline=[0] * count, comments=[self.ctx.synthetic],
        )
        record.set_d_features()  # init values and checksums of this record
        record.set_defaults()
        return record

    def _take(self, file_name: str) -> bytes:
        """A file wfdb wrote into the scratch folder, as an archive member."""
        path = self.scratch / file_name
        data = path.read_bytes()
        path.unlink()
        self.ctx.members.add(file_name, data)
        return data

    def write(self, samples: np.ndarray, start: int) -> None:
        for offset, sample in enumerate(samples):
            name = self.ctx.stem(start + offset)
            signal = sample.astype(np.int64)
            if self._first is None or self._header is None:
                self._first = self._record(name, signal)
                self._first.wrsamp(write_dir=str(self.scratch))
                self._take(f"{name}.dat")
                self._header = _HeaderTemplate(self._take(f"{name}.hea").decode("utf-8"))
                continue
            record = copy.copy(self._first)
            record.record_name, record.d_signal = name, signal
            record.file_name = [f"{name}.dat"] * len(self.ctx.channel_names)
            record.wr_dat_files(write_dir=str(self.scratch))
            self._take(f"{name}.dat")
            header = self._header.render(name, signal[0], record.calc_checksum())
            self.ctx.members.add(f"{name}.hea", header.encode("utf-8"))


class _HeaderTemplate:
    """A WFDB header as wfdb wrote it, with the per-record fields made replaceable."""

    def __init__(self, text: str) -> None:
        record_line, *rest = text.split("\n")
        self.record_tail = record_line.split(" ", 1)[1]
        # signal line: file format gain(baseline)/units resolution zero init checksum [block size [name]]
        self.signals = [line.split(" ", 7) for line in rest if line and not line.startswith("#")]
        self.comments = [line for line in rest if line.startswith("#")]

    def render(self, name: str, initial: np.ndarray, checksums: list[int]) -> str:
        lines = [f"{name} {self.record_tail}"]
        for fields, init, checksum in zip(self.signals, initial, checksums, strict=True):
            lines.append(" ".join([f"{name}.dat", *fields[1:5], str(int(init)), str(checksum), *fields[7:]]))
        return "".join(f"{line}\n" for line in [*lines, *self.comments])


class TextWriter:
    """One text file per sample: a row per time step, a column per channel."""

    def __init__(self, ctx: EncodeContext, suffix: str, delimiter: str, header: bool) -> None:
        self.ctx, self.suffix, self.delimiter = ctx, suffix, delimiter
        self.header = (delimiter.join(ctx.channel_names) + "\n").encode() if header else b""

    def write(self, samples: np.ndarray, start: int) -> None:
        for offset, sample in enumerate(samples):
            self.ctx.members.add(f"{self.ctx.stem(start + offset)}.{self.suffix}",
                                 self.header + int16_rows(sample, self.delimiter))


def csv_writer(ctx: EncodeContext) -> TextWriter:
    return TextWriter(ctx, "csv", ",", header=True)


def asc_writer(ctx: EncodeContext) -> TextWriter:
    """deepfake-ecg's layout: rows of space-separated integers, one column per lead, no header."""
    return TextWriter(ctx, "asc", " ", header=False)
