"""How far an ECG model's measurements are from an independent delineation of the same ECGs (the model card's
`agreement`, the README's tables and tests/workers/test_ecg_measurements.py).

The reference is neurokit2's full-signal, beat-by-beat delineation as published: R peaks by `ecg_peaks`, every
beat of the record delineated by `ecg_delineate(method="dwt")` (its own Q and S peaks, 2000 Hz analysis) on lead
II high-passed as the measurement does, and each measurement taken beat by beat from those points. The measurement
under test instead delineates the record's median beat (`workers.ecg_measurements`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# measurement: (tolerance, unit). The issue's for heart rate, QRS and QT; chosen here for the others: RR to the ms,
# PR, the QTc's and each fiducial point as QT, axes to a 15-degree sector (the resolution axes are read at),
# amplitudes to half a small square at 10 mm/mV.
ISSUE_TOLERANCES = {"heart_rate": (1.0, "bpm"), "qrs_duration": (12.0, "ms"), "qt_interval": (20.0, "ms")}
OTHER_TOLERANCES = {"rr_mean": (1.0, "ms"), "rr_sd": (1.0, "ms"), "pr_interval": (20.0, "ms"),
                    "qtc_bazett": (20.0, "ms"), "qtc_fridericia": (20.0, "ms"), "p_axis": (15.0, "degrees"),
                    "qrs_axis": (15.0, "degrees"), "t_axis": (15.0, "degrees")}
AMPLITUDE_TOLERANCE = 50.0  # uV, each lead of each record
FIDUCIAL_TOLERANCE = 20.0  # ms, each beat's point
SAMPLES, SEED = 60, 42  # the ECGs compared (the reference costs ~100 ms each)
# ms from T peak to T offset at or under which a T offset is implausible (the T wave's descending limb is longer:
# 50 ms and more in adults)
SHORT_T_TAIL = 20.0

# neurokit2's names of the delineated points, by the measurement's
WAVES = {"P_onset": "ECG_P_Onsets", "P_peak": "ECG_P_Peaks", "P_offset": "ECG_P_Offsets",
         "QRS_onset": "ECG_R_Onsets", "QRS_offset": "ECG_R_Offsets", "T_peak": "ECG_T_Peaks",
         "T_offset": "ECG_T_Offsets"}
# what the axes' windows run between (the measurement's definitions)
_AXIS_WAVES = {"p_axis": ("P_onset", "P_offset"), "qrs_axis": ("QRS_onset", "QRS_offset"),
               "t_axis": ("QRS_offset", "T_offset")}


def described() -> str:
    import neurokit2 as nk

    return (f"neurokit2 {nk.__version__} full-signal DWT delineation (ecg_delineate), every beat of the record, each "
            "measurement taken beat by beat")


def reference(sample: np.ndarray, names: list[str], rate: float) -> dict[str, Any]:
    """The reference's measurements of one ECG (time, leads): RR statistics from all R peaks; PR, QRS and QT the
    medians of their per-beat values (each beat's under `beats`), QTc from them; the axes from the median over beats
    of the net areas of I and aVF; R and S amplitudes per lead the medians over beats; `points` each beat's points,
    `r_peaks` the R peaks; `t_tails` each beat's T peak to T offset (ms)."""
    import neurokit2 as nk
    from scipy import signal as scipy_signal

    from workers.ecg_measurements import _highpass

    cleaned = scipy_signal.sosfiltfilt(_highpass(rate), sample.astype(np.float64), axis=0)
    lead_i, lead_ii = cleaned[:, names.index("I")], cleaned[:, names.index("II")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(lead_ii, sampling_rate=int(rate))
        peaks = np.asarray(info["ECG_R_Peaks"])
        _, waves = nk.ecg_delineate(lead_ii, peaks, sampling_rate=int(rate), method="dwt")
    points = {name: np.asarray(waves[key], dtype=float) for name, key in WAVES.items()}
    n = min(len(v) for v in points.values())
    points = {name: values[:n] for name, values in points.items()}
    ms = 1000.0 / rate
    rr = np.diff(peaks) * ms
    onsets = points["QRS_onset"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a record whose every beat lacks a point: NaN
        beats = {"pr_interval": (onsets - points["P_onset"]) * ms,
                 "qrs_duration": (points["QRS_offset"] - onsets) * ms,
                 "qt_interval": (points["T_offset"] - onsets) * ms}
        result = {"heart_rate": 60000.0 / rr.mean(), "rr_mean": rr.mean(), "rr_sd": rr.std(),
                  **{name: float(np.nanmedian(values)) for name, values in beats.items()}}
        t_tails = (points["T_offset"] - points["T_peak"]) * ms
        result |= {"beats": beats, "points": points, "r_peaks": peaks, "t_tails": t_tails[np.isfinite(t_tails)],
                   "qt_without_short_tails": float(np.nanmedian(beats["qt_interval"][t_tails > SHORT_T_TAIL]))}
    rr_s = rr.mean() / 1000.0
    result |= {"qtc_bazett": result["qt_interval"] / rr_s ** 0.5,
               "qtc_fridericia": result["qt_interval"] / rr_s ** (1 / 3)}
    lead_avf = lead_ii - lead_i / 2
    for axis, (first, last) in _AXIS_WAVES.items():
        areas = [(np.sum(lead_i[int(a):int(b) + 1] - lead_i[int(on)]),
                  np.sum(lead_avf[int(a):int(b) + 1] - lead_avf[int(on)]))
                 for on, a, b in zip(onsets, points[first], points[last]) if np.isfinite([on, a, b]).all() and b > a]
        result[axis] = float(np.degrees(np.arctan2(*np.median(areas, axis=0)[::-1]))) if areas else np.nan
    r_amplitudes, s_amplitudes = [], []
    for on, off in zip(onsets, points["QRS_offset"]):
        if np.isfinite([on, off]).all():
            qrs = cleaned[int(on):int(off) + 1] - cleaned[int(on)]
            r_at = np.argmax(qrs, axis=0)
            r_amplitudes.append(np.maximum(qrs.max(axis=0), 0))
            s_amplitudes.append([max(0.0, -qrs[r:, k].min()) for k, r in enumerate(r_at)])
    for name, values in (("r_amplitude", r_amplitudes), ("s_amplitude", s_amplitudes)):
        result[name] = dict(zip(names, np.median(values, axis=0))) if values else None
    return result


def _nearest(points: list[int], point: float) -> float:
    """The one of `points` nearest to `point`, less it (samples); NaN when there are none."""
    if not points:
        return np.nan
    differences = np.asarray(points) - point
    return float(differences[np.argmin(np.abs(differences))])


def _row(diffs: np.ndarray, tolerance: float, unit: str) -> dict[str, Any]:
    """Share within tolerance (of all, unmeasured ones counting as outside), median difference (measurement less
    reference), 90th percentile of the absolute differences, how many are missing on either side."""
    known = diffs[np.isfinite(diffs)]
    return {"tolerance": tolerance, "unit": unit, "compared": len(diffs),
            "within": round(float(np.mean(np.abs(diffs) <= tolerance)), 4),
            "median_difference": round(float(np.median(known)), 1) if len(known) else None,
            "p90_abs_difference": round(float(np.percentile(np.abs(known), 90)), 1) if len(known) else None,
            "not_measured": int(np.sum(~np.isfinite(diffs)))}


def compare(measured: list[dict[str, Any]], references: list[dict[str, Any]], names: list[str],
            rate: float) -> dict[str, dict[str, Any]]:
    """Per measurement (the amplitudes over every lead of every record, each fiducial point over every beat of the
    reference), how the measurements differ from the reference's."""
    rows = {}
    for key, (tolerance, unit) in {**ISSUE_TOLERANCES, **OTHER_TOLERANCES}.items():
        diffs = np.array([m[key] - r[key] if m[key] is not None else np.nan for m, r in zip(measured, references)])
        if key.endswith("_axis"):
            diffs = (diffs + 180) % 360 - 180  # the shorter way round
        rows[key] = _row(diffs, tolerance, unit)
    for key in ("r_amplitude", "s_amplitude"):
        diffs = np.array([m[key][lead] - r[key][lead] if m[key] is not None and r[key] is not None else np.nan
                          for m, r in zip(measured, references) for lead in names])
        rows[f"{key} (each lead)"] = _row(diffs, AMPLITUDE_TOLERANCE, "uV")
    for name in WAVES:  # every beat of the reference: the measurement's point nearest to the reference's, less it
        diffs = np.array([_nearest(m["fiducials"][name], point) * 1000.0 / rate
                          for m, r in zip(measured, references) for point in r["points"][name] if np.isfinite(point)])
        rows[f"{name} (each beat)"] = _row(diffs, FIDUCIAL_TOLERANCE, "ms")
    return rows


def ecgs(model_dir: Path, count: int, seed: int, batch: int = 64) -> Iterator[tuple[np.ndarray, list[str], float]]:
    """Samples 0 .. count-1 of `seed`, 12 leads, as a job makes them on the CPU, `batch` at a time: (samples, lead
    names, sampling rate)."""
    import onnxruntime as ort

    from model_store.store import load_manifest
    from workers import noise, postprocess

    manifest = load_manifest(model_dir)
    params = {"leads": 12}
    names = manifest.output.channel_names(params)
    session = ort.InferenceSession(str(model_dir / manifest.artifact), providers=["CPUExecutionProvider"])
    for start in range(0, count, batch):
        (raw,) = session.run([manifest.output.tensor],
                             noise.draw(manifest.noise_inputs, seed, start, min(batch, count - start)))
        yield postprocess.to_samples(raw, manifest.output, params), names, manifest.output.sampling_rate  # type: ignore[union-attr]


def agreement(model_dir: Path, count: int = SAMPLES, seed: int = SEED) -> dict[str, Any]:
    """What the model card says of the measurements' agreement with the reference."""
    from workers.ecg_measurements import measure

    measured, references = [], []
    for samples, names, rate in ecgs(model_dir, count, seed):
        measured += [measure(sample, names, rate) for sample in samples]
        references += [reference(sample, names, rate) for sample in samples]
    return {"reference": described(), "samples": count, "seed": seed, "leads": len(names),
            "measurements": compare(measured, references, names, rate)}
