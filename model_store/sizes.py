"""How many bytes a job's files can take on disk at most, from its model's output spec, format and count.

Every format's size is bounded by what its samples' shape allows: an int16 value is at most 6 characters
("-32768") as text; a PNG at most its raw rows plus deflate's worst case; a zip member at most its data plus
fixed headers; EDF+ and DICOM files are their samples plus headers of known size. An ECG printout's page is
bounded by the writer itself, which refuses a page above PRINTOUT_MAX_BYTES. So the API reserves a job's bound in the results' disk budget at submit (DSB_RESULTS_MAX_BYTES)
and can never be surprised by a job larger than what it reserved. Checked against real archives of every format
(tests/test_sizes.py). Imports nothing heavy: the API and the workers both may use it.
"""

from __future__ import annotations

import math
from typing import Any

from model_store.manifest import ImageOutput, Manifest, SignalOutput

NPY_HEADER = 128  # numpy's header, padded to 64 bytes (a few hundred for huge shapes: below this plus slack)
ZIP_MEMBER = 160  # local header 30 + central entry 46 + zip64 extras (2 x 28) + data descriptor 24 (names apart)
ZIP_END = 22 + 56 + 20  # end of central directory, zip64 end record and locator
MANIFEST = 64 * 1024  # manifest.json without its per-file list (request, model card, citations, versions)
MANIFEST_PER_FILE = 256  # a data file's line in the manifest: name, sha256, size
TEXT_VALUE = 7  # "-32768" and a separator
JSON_RECORD = 1024  # an NDJSON line's keys, index, seed, rate, unit, channel names
# EDF+ (workers/encoders/edf.py): 256 header bytes per signal and one more 256 for the file; each annotation signal
# takes 114 bytes of every 1-s data record (edflib), 1 signal in a plain file, up to 64 in an annotated one.
EDF_HEADER, EDF_ANNOTATION_BYTES, EDF_MAX_ANNOTATION_SIGNALS = 256, 114, 64
# DICOM (workers/encoders/dicom.py): its waveform plus the modules (under 1.6 KB), each channel's definition
# (under 160 bytes) and each measurement's annotation (under 180 bytes), with room for longer ids
DICOM_FIXED, DICOM_PER_CHANNEL, DICOM_PER_MEASUREMENT, DICOM_MEASUREMENTS = 4096, 256, 256, 16
# A printout page's size follows its traces' shapes, not only its pixel count: workers/encoders/printout.py refuses a
# page above this (real ECGs make 70-120 KB pages; noise of any amplitude up to about 185 KB)
PRINTOUT_MAX_BYTES = 512 * 1024


def measurements_bound(output: SignalOutput, channels: int) -> int:
    """One annotated ECG's measurements as JSON, and at most its labels.csv row or its WFDB annotation file
    (workers/annotations.py): scalars, two amplitudes per lead, 8 fiducial points per beat, R peaks at least 0.3 s
    apart (neurokit2's detector)."""
    beats = math.ceil(output.length / (0.3 * output.sampling_rate)) + 1
    return 1024 + channels * 2 * 32 + 8 * beats * 8


def _png(height: int, width: int, channels: int) -> int:
    raw = height * (width * channels + 1)  # each row: a filter byte, then its pixels
    return raw + raw // 1000 + 64 + 12 * (raw // 65536 + 1) + 512  # deflate's worst case, chunks, PNG's other chunks


def _deflated(size: int) -> int:
    return size + size // 1000 + 64  # stored blocks when deflate cannot shrink the data


def edf_file_bound(length: int, rate: float, channels: int, annotated: bool) -> int:
    """One EDF+ file's size: exact for a plain one, at most this for an annotated one."""
    records = math.ceil(length / rate)
    signals = EDF_MAX_ANNOTATION_SIGNALS if annotated else 1
    per_record = math.ceil(rate) * channels * 2 + signals * EDF_ANNOTATION_BYTES
    return EDF_HEADER * (1 + channels + signals) + records * per_record


def archive_bound(manifest: Manifest, fmt: str, count: int, params: dict[str, Any], deflated: bool = False,
                  annotated: bool = False) -> int:
    """At most this many bytes: the archive of `count` samples in `fmt`, manifest.json included. `annotated`: the
    samples carry their measurements (EDF+ annotations, DICOM waveform annotations)."""
    output = manifest.output
    name = len(getattr(output, "file_prefix", "sample")) + 16  # <prefix>_NNNNN[_mask].ext, up to 10 digits
    if isinstance(output, SignalOutput):
        channels = len(output.channel_names(params))
        values = output.length * channels
        text = values * TEXT_VALUE + channels * 32 + 64
        per_format = {
            "npy": [(NPY_HEADER + count * values * 2, 1)],
            "wfdb": [(values * 2, count), (512 + 160 * channels, count)],
            "csv": [(text, count)],
            "asc": [(text, count)],
            "json": [(count * (JSON_RECORD + values * TEXT_VALUE + channels * 40), 1)],
            "edf": [(edf_file_bound(output.length, output.sampling_rate, channels, annotated), count)],
            "dicom": [(values * 2 + DICOM_FIXED + DICOM_PER_CHANNEL * channels
                       + (DICOM_PER_MEASUREMENT * DICOM_MEASUREMENTS if annotated else 0), count)],
            "pdf": [(PRINTOUT_MAX_BYTES, count)],
            "png": [(PRINTOUT_MAX_BYTES, count)],
        }
    elif isinstance(output, ImageOutput):
        pixels = output.height * output.width
        colour = _png(output.height, output.width, len(output.color_channels))
        mask = _png(output.height, output.width, 1) if output.mask_channel else 0
        per_format = {
            "npy": [(NPY_HEADER + count * pixels * len(output.channels), 1)],
            "png": [(colour, count)] + ([(mask, count)] if mask else []),
            "json": [(count * (JSON_RECORD + math.ceil((colour + mask) / 3) * 4), 1)],
        }
    else:  # pragma: no cover - the manifest's kinds are the two above
        raise ValueError(f"no size bound for {type(output).__name__}")
    if fmt not in per_format:
        raise ValueError(f"no size bound for format {fmt!r} of {manifest.id}")
    if annotated and isinstance(output, SignalOutput):  # labels.csv, WFDB annotations, measurements in NDJSON
        labelled = measurements_bound(output, len(output.channel_names(params)))
        per_format[fmt] = per_format[fmt] + [(count * labelled, 1), (labelled, count if fmt == "wfdb" else 0)]
        if fmt == "json":
            per_format[fmt] = per_format[fmt] + [(count * labelled, 1)]
    total = ZIP_END + MANIFEST
    for size, how_many in per_format[fmt]:
        data = _deflated(size) if deflated else size
        total += how_many * (data + ZIP_MEMBER + 2 * name + MANIFEST_PER_FILE)
    total += ZIP_MEMBER + 2 * len("manifest.json")
    return total


def samples_bound(manifest: Manifest, count: int, params: dict[str, Any]) -> int:
    """The job's samples array (`samples.npy`, which the stream reads): its shape times its dtype's size."""
    output = manifest.output
    if isinstance(output, SignalOutput):
        return NPY_HEADER + count * output.length * len(output.channel_names(params)) * 2
    return NPY_HEADER + count * output.height * output.width * len(output.channels)


def job_bound(manifest: Manifest, fmt: str, count: int, params: dict[str, Any], deflated: bool = False,
              annotated: bool = False) -> int:
    """What a finished job keeps on disk at most: its archive, its samples array (one file for a stored npy
    archive, which is built on the samples array itself) and its manifest.json beside them."""
    archive = archive_bound(manifest, fmt, count, params, deflated, annotated)
    shared = fmt == "npy" and not deflated
    measured = 0  # an annotated job's per-sample measurements beside its samples, for /stream
    if annotated and isinstance(manifest.output, SignalOutput):
        measured = count * measurements_bound(manifest.output, len(manifest.output.channel_names(params)))
    return (archive + (0 if shared else samples_bound(manifest, count, params)) + MANIFEST + count * MANIFEST_PER_FILE
            + measured)
