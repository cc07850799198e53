"""An annotated job's measurements, in every format: labels.csv, WFDB annotation files, NDJSON `measurements`.

The samples are measured batch by batch before they are encoded (`workers.pipeline.produce`, `measure`: the worker's
measuring processes, `workers.measuring_processes`, while the lanes make the next batches), into the encode
context's `measurements` (sample index -> `workers.ecg_measurements.measure`'s dict), before any encoder writes
them. `AnnotatedWriter` then adds, around the format's own writer: one labels.csv row per sample (a piece per
chunk, joined in chunk order into the archive's labels.csv; chunk 0's piece starts with the header), and for
`wfdb` a PhysioNet delineation annotation file per record (`<record>.atr`, through `wfdb.wrann`); and each
sample's measurements as a file of the job's measurements folder, which /stream reads (the API measures nothing).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import wfdb

from workers import ecg_measurements, measuring_processes
from workers.encoders.base import BatchWriter, EncodeContext

LABELS_SUFFIX = ".labels"  # a chunk's piece of labels.csv in the job's parts folder
LABELS_MEMBER = "labels.csv"
ANNOTATION_EXTENSION = "atr"
# PhysioNet's delineation symbols (as in the QT and LUDB databases): a wave's onset "(", its peak, its offset ")"
_SYMBOLS = (("P_onset", "("), ("P_peak", "p"), ("P_offset", ")"), ("QRS_onset", "("), ("R_peaks", "N"),
            ("QRS_offset", ")"), ("T_peak", "t"), ("T_offset", ")"))


def measurer(kind: str, ctx: EncodeContext, processes: int, into: dict[int, dict[str, Any]] | None = None,
             ) -> Callable[[np.ndarray, int], None]:
    """Measures a batch of samples into `ctx.measurements`, or `into` (kind: the manifest's `measurements`), in
    `processes` processes side by side (`workers.measuring_processes`)."""
    if kind != "ecg":
        raise ValueError(f"this model measures nothing (its manifest declares no measurements, kind {kind!r})")
    rate, names = ctx.output.sampling_rate, ctx.channel_names  # type: ignore[union-attr]
    target = ctx.measurements if into is None else into

    def measure(samples: np.ndarray, start: int) -> None:
        measured = measuring_processes.measure_each(ecg_measurements.measure, samples, processes, names, rate)
        for offset, values in enumerate(measured):
            target[start + offset] = values

    return measure


def label_columns(channel_names: list[str]) -> list[str]:
    """labels.csv's header: the record, then each measurement named with its unit."""
    scalars = [f"{name}_{unit}" for name, (unit, _) in ecg_measurements.MEASUREMENTS.items()]
    per_lead = [f"{ecg_measurements.lead_measurement(name, lead)}_{unit}"
                for name, (unit, _) in ecg_measurements.PER_LEAD.items()
                for lead in channel_names]
    return ["record", "index", *scalars, *per_lead]


def label_row(record: str, index: int, measured: dict[str, Any], channel_names: list[str]) -> list[Any]:
    def cell(value: Any) -> Any:
        return "" if value is None else value

    scalars = [cell(measured[name]) for name in ecg_measurements.MEASUREMENTS]
    per_lead = [cell((measured[name] or {}).get(lead)) for name in ecg_measurements.PER_LEAD for lead in channel_names]
    return [record, index, *scalars, *per_lead]


def annotation(measured: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """The record's fiducial points as (sample, symbol), in time order (onset before peak before offset)."""
    points = [(sample, rank, symbol) for rank, (name, symbol) in enumerate(_SYMBOLS)
              for sample in measured["fiducials"][name]]
    points.sort()
    return np.array([p[0] for p in points], dtype=np.int64), [p[2] for p in points]


class AnnotatedWriter:
    """The format's writer, plus the job's labels and, for WFDB, each record's annotation file."""

    def __init__(self, inner: BatchWriter, ctx: EncodeContext, fmt: str, per_sample: Path) -> None:
        self.inner, self.ctx, self.wfdb, self.per_sample = inner, ctx, fmt == "wfdb", per_sample
        per_sample.mkdir(parents=True, exist_ok=True)
        self.labels = ctx.part(LABELS_SUFFIX)
        self.columns = label_columns(ctx.channel_names)
        with self.labels.open("w", newline="") as out:  # a retried chunk starts its piece again
            if ctx.chunk == 0:
                csv.writer(out).writerow(self.columns)
        if self.wfdb:
            self.scratch = ctx.part(".wrann")
            self.scratch.mkdir(parents=True, exist_ok=True)

    def write(self, samples: np.ndarray, start: int) -> None:
        rows = io.StringIO()
        table = csv.writer(rows)
        for index in range(start, start + len(samples)):
            measured = self.ctx.measurements[index]
            table.writerow(label_row(self.ctx.stem(index), index, measured, self.ctx.channel_names))
            (self.per_sample / f"{index}.json").write_bytes(orjson.dumps(measured))  # what /stream sends
            if self.wfdb:
                self._annotate(self.ctx.stem(index), measured)
        with self.labels.open("a", newline="") as out:
            out.write(rows.getvalue())
        self.inner.write(samples, start)
        for index in range(start, start + len(samples)):  # written everywhere: a chunk's memory stays flat
            del self.ctx.measurements[index]

    def _annotate(self, record: str, measured: dict[str, Any]) -> None:
        at, symbols = annotation(measured)
        if not len(at):
            return  # nothing delineated (too few beats): no annotation file rather than an empty one
        wfdb.wrann(record, ANNOTATION_EXTENSION, at, symbol=symbols, write_dir=str(self.scratch),
                   fs=self.ctx.output.sampling_rate)  # type: ignore[union-attr]
        path = self.scratch / f"{record}.{ANNOTATION_EXTENSION}"
        self.ctx.members.add(path.name, path.read_bytes())
        path.unlink()


def manifest_section(kind: str, channel_names: list[str], agreement: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the archive's manifest says of its measurements: method, definitions and units, where they are, and (from
    the model's distributions document, as its card says) how they agree with an independent delineation."""
    return {
        "kind": kind,
        "method": ecg_measurements.METHOD,
        "definitions": {name: {"unit": unit, "definition": text}
                        for name, (unit, text) in {**ecg_measurements.MEASUREMENTS,
                                                   **ecg_measurements.PER_LEAD}.items()},
        "fiducials": {"names": list(ecg_measurements.FIDUCIALS), "unit": "sample index into the record"},
        "null": "not measurable (too few beats, a wave not found): never a guess",
        "files": {LABELS_MEMBER: f"one row per sample; columns {', '.join(label_columns(channel_names)[:4])}, ...; "
                                 "a column's name ends with its unit",
                  f"*.{ANNOTATION_EXTENSION}": "wfdb: the record's fiducial points, PhysioNet delineation symbols "
                                              "( p ) ( N ) t ) (read with wfdb.rdann)",
                  "*.ndjson": "json: each line's `measurements`, fiducials included"},
        **({"agreement": agreement} if agreement else {}),
    }
