"""EDF+ (through pyedflib): one file per sample, lossless int16 values, an annotated ECG's measurements as TALs.

The digital range is int16's and the physical range the same numbers, so one digital unit is one physical unit
(uV for the ECG) and the file holds the samples exactly. EDF+ keeps annotations in annotation signals of a fixed
size per data record (1 s here); edflib drops those that do not fit, so each file gets as many annotation
signals as its annotations need, up to edflib's 64, which the disk budget's bound allows for (model_store/sizes.py):
640 annotations in 10 s, more fiducial points than any heart makes."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pyedflib

from model_store.sizes import EDF_MAX_ANNOTATION_SIGNALS as MAX_ANNOTATION_SIGNALS
from workers.encoders.base import EncodeContext

# EDF's clipping date is 1985: the header's start date says nothing about when, or of whom, a sample was made.
START = datetime(1985, 1, 1)
ANNOTATION_TEXT = 40  # edflib's longest annotation text
RECORD_SECONDS = 1

# (key in the measurements, label, unit): the scalar measurements files show, in the order printouts show them
SCALARS = [
    ("heart_rate", "HR", "bpm"), ("pr_interval", "PR", "ms"), ("qrs_duration", "QRS", "ms"),
    ("qt_interval", "QT", "ms"), ("qtc_bazett", "QTc Bazett", "ms"), ("qtc_fridericia", "QTc Fridericia", "ms"),
    ("rr_mean", "RR mean", "ms"), ("rr_sd", "RR SD", "ms"),
    ("p_axis", "P axis", "deg"), ("qrs_axis", "QRS axis", "deg"), ("t_axis", "T axis", "deg"),
]
FIDUCIALS = {"P_onset": "P onset", "P_peak": "P peak", "P_offset": "P offset", "QRS_onset": "QRS onset",
             "R_peaks": "R peak", "QRS_offset": "QRS offset", "T_peak": "T peak", "T_offset": "T offset"}


def scalar_measurements(measured: dict[str, Any] | None) -> list[tuple[str, str, float, str]]:
    """(key, label, value, unit) of each scalar measurement that has a finite value."""
    found = []
    for key, label, unit in SCALARS:
        value = (measured or {}).get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            found.append((key, label, float(value), unit))
    return found


def fiducial_points(measured: dict[str, Any] | None, length: int) -> list[tuple[int, str]]:
    """(sample index, label) of each fiducial point inside the record, in time order."""
    fiducials = (measured or {}).get("fiducials") or {}
    points = []
    for key, label in FIDUCIALS.items():
        for index in fiducials.get(key) or []:
            if isinstance(index, (int, np.integer)) and 0 <= index < length:
                points.append((int(index), label))
    return sorted(points)


class EdfWriter:
    def __init__(self, ctx: EncodeContext) -> None:
        self.ctx, self.output = ctx, ctx.output
        self.rate = int(ctx.output.sampling_rate)
        if self.rate != ctx.output.sampling_rate or ctx.output.dtype != "int16":
            raise ValueError("EDF output needs a whole number of samples per second and int16 samples")
        self.scratch = ctx.part(".edf")
        self.scratch.mkdir(parents=True, exist_ok=True)
        limits = np.iinfo(np.int16)
        self.headers = [
            {"label": f"ECG {name}" if ctx.output.file_prefix == "ecg" else name, "dimension": ctx.output.unit,
             "sample_frequency": self.rate, "physical_min": limits.min, "physical_max": limits.max,
             "digital_min": limits.min, "digital_max": limits.max, "transducer": "", "prefilter": ""}
            for name in ctx.channel_names
        ]

    def write(self, samples: np.ndarray, start: int) -> None:
        for offset, sample in enumerate(samples):
            index = start + offset
            name = f"{self.ctx.stem(index)}.edf"
            path = self.scratch / name
            self._write_file(str(path), index, sample)
            self.ctx.members.add(name, path.read_bytes())
            path.unlink()

    def _annotations(self, index: int, length: int) -> list[tuple[float, float, str]]:
        """(onset s, duration s or -1, text): the record's measurements over its whole length, then its
        fiducial points."""
        measured = self.ctx.measurements.get(index)
        seconds = length / self.rate
        notes = [(0.0, seconds, f"{label} {value:g} {unit}"[:ANNOTATION_TEXT])
                 for _, label, value, unit in scalar_measurements(measured)]
        return notes + [(point / self.rate, -1.0, label) for point, label in fiducial_points(measured, length)]

    def _write_file(self, path: str, index: int, sample: np.ndarray) -> None:
        length = sample.shape[0]
        records = math.ceil(length / (self.rate * RECORD_SECONDS))
        annotations = self._annotations(index, length)
        signals = max(1, math.ceil(len(annotations) / records))
        if signals > MAX_ANNOTATION_SIGNALS:
            raise ValueError(f"sample {index}: {len(annotations)} annotations do not fit in an EDF+ file")
        writer = pyedflib.EdfWriter(path, len(self.headers), file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            writer.setSignalHeaders(self.headers)
            writer.setStartdatetime(START)
            # EDF+ patient field: code, sex, birthdate, name, then free text (no spaces inside a subfield)
            writer.setPatientCode(self.ctx.stem(index))
            writer.setPatientName("SYNTHETIC")
            writer.setPatientAdditional(f"not_a_real_person_{self.ctx.model_id}_v{self.ctx.model_version}"[:40])
            writer.setEquipment("DeepSynthBody")
            writer.setRecordingAdditional(f"SYNTHETIC_seed_{self.ctx.seed}"[:40])
            writer.set_number_of_annotation_signals(signals)
            block = self.rate * RECORD_SECONDS
            padded = np.zeros((records * block, sample.shape[1]), np.int16)
            padded[:length] = sample
            for record in range(records):
                chunk = padded[record * block:(record + 1) * block]
                writer.blockWriteDigitalShortSamples(np.ascontiguousarray(chunk.T).ravel())  # signal after signal
            for onset, duration, text in annotations:
                writer.writeAnnotation(onset, duration, text)
        finally:
            writer.close()
