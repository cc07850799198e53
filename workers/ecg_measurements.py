"""The measurements of one ECG, the way interpretation programs (GE 12SL, Glasgow) make them: on its median beat.

Method: leads II and I are high-passed at 0.5 Hz (neurokit2's cleaning filter); R peaks are found on lead II
(neurokit2's default detector); each lead's median beat is the sample-wise median of its beats aligned on those
peaks, one RR interval long (II and I from the high-passed leads; every other lead's beats each lose their own mean
first, which removes the baseline as far as R and S amplitudes need, at a sixth of the filter's cost); lead II's
median beat is delineated by neurokit2's discrete wavelet method (on three copies of it and R peaks from the second
on, so the delineator sees the record's heart rate and the second copy has neighbours), and its fiducial points are
mapped back onto every beat of the record. Frontal axes come from the net areas of leads I and aVF (II - I/2) over
each wave; R and S amplitudes from each lead's median beat over the QRS, from the level at QRS onset. Delineating
one beat instead of ten seconds is about ten times cheaper and steadier beat to beat.

`measure` returns a dict with exactly these keys (`MEASUREMENTS` gives the scalar ones with their units):

- heart_rate (bpm), rr_mean, rr_sd (ms): from the RR intervals of the record;
- pr_interval (P onset to QRS onset), qrs_duration (QRS onset to offset), qt_interval (QRS onset to T offset) (ms);
- qtc_bazett (QT / sqrt(RR in s)), qtc_fridericia (QT / cbrt(RR in s)) (ms), RR the mean RR;
- p_axis, qrs_axis, t_axis (degrees, -180 to 180);
- r_amplitude, s_amplitude: {lead: uV} for every lead of the sample (S as a positive depth);
- fiducials: {P_onset, P_peak, P_offset, QRS_onset, QRS_offset, R_peaks, T_peak, T_offset}: lists of sample
  indices into the record, one per beat whose point falls inside it.

A value that cannot be measured (too few beats, a wave the delineator does not find) is None, never a guess;
everything that depends on it is None too (QT needs the T offset, the T axis too).
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

import neurokit2 as nk
import numpy as np
from scipy import signal as scipy_signal

# the module, not the function the package exports under its name: its DWT steps (see _delineate)
_dwt = importlib.import_module("neurokit2.ecg.ecg_delineate")


def _remembering(adjust: Callable[..., Any]) -> Callable[..., Any]:
    """neurokit2's `_dwt_adjust_parameters`, remembering its answers. Every DWT step asks it for the heart rate's
    search durations and wavelet degree from the R peaks it was given (12 calls per median beat, each computing the
    rate from the peaks: a fifth of a measurement's time); the answer depends only on the arguments, and a median
    beat's copies always have the same four peaks for the same beat length."""

    @lru_cache(maxsize=1024)
    def remembered(peaks: bytes, dtype: str, sampling_rate: float, duration: float | None, target: str | None) -> Any:
        return adjust(np.frombuffer(peaks, dtype=dtype), sampling_rate, duration=duration, target=target)

    @wraps(adjust)
    def adjusted(rpeaks: Any, sampling_rate: float, duration: float | None = None, target: str | None = None) -> Any:
        peaks = np.asarray(rpeaks)
        if peaks.dtype == object or len(peaks) > _COPIES:  # a record's peaks (the reference's): not worth keeping
            return adjust(rpeaks, sampling_rate, duration=duration, target=target)
        return remembered(peaks.tobytes(), peaks.dtype.str, sampling_rate, duration, target)

    adjusted.remembering = True  # type: ignore[attr-defined]
    return adjusted


if not getattr(_dwt._dwt_adjust_parameters, "remembering", False):  # the steps call it by its module's name
    _dwt._dwt_adjust_parameters = _remembering(_dwt._dwt_adjust_parameters)

METHOD = (f"neurokit2 {nk.__version__}: R peaks (ecg_findpeaks, 'neurokit') on lead II high-passed at 0.5 Hz; "
          "median beat of each lead over the record's beats (II and I high-passed, other leads each beat less its "
          "mean); discrete wavelet delineation (ecg_delineate, 'dwt') "
          "of lead II's median beat; axes from the net areas of I and aVF")

# The scalar measurements, their unit and what they are: what labels.csv, filters and the model card use.
MEASUREMENTS: dict[str, tuple[str, str]] = {
    "heart_rate": ("bpm", "60000 / mean RR interval"),
    "rr_mean": ("ms", "mean RR interval"),
    "rr_sd": ("ms", "standard deviation of the RR intervals"),
    "pr_interval": ("ms", "P onset to QRS onset, median beat of lead II"),
    "qrs_duration": ("ms", "QRS onset to QRS offset, median beat of lead II"),
    "qt_interval": ("ms", "QRS onset to T offset, median beat of lead II"),
    "qtc_bazett": ("ms", "QT / sqrt(RR in seconds)"),
    "qtc_fridericia": ("ms", "QT / cbrt(RR in seconds)"),
    "p_axis": ("degrees", "frontal P axis: atan2 of the net P areas of aVF and I"),
    "qrs_axis": ("degrees", "frontal QRS axis: atan2 of the net QRS areas of aVF and I"),
    "t_axis": ("degrees", "frontal T axis: atan2 of the net ST-T areas of aVF and I"),
}
PER_LEAD: dict[str, tuple[str, str]] = {
    "r_amplitude": ("uV", "largest positive deflection of the QRS above its onset level, per lead"),
    "s_amplitude": ("uV", "deepest negative deflection of the QRS after R, below its onset level, per lead"),
}


def lead_measurement(name: str, lead: str) -> str:
    """A per-lead measurement's name for one lead (r_amplitude_V5): how filters, distributions and labels.csv (with
    the unit after it) name it."""
    return f"{name}_{lead}"


def flat(measured: dict[str, Any]) -> dict[str, float | None]:
    """The scalar measurements and every per-lead one under its lead's name (`lead_measurement`); a lead whose
    amplitudes are not measurable has no entry."""
    values: dict[str, float | None] = {name: measured[name] for name in MEASUREMENTS}
    for name in PER_LEAD:
        for lead, value in (measured[name] or {}).items():
            values[lead_measurement(name, lead)] = value
    return values


FIDUCIALS = ("P_onset", "P_peak", "P_offset", "QRS_onset", "QRS_offset", "R_peaks", "T_peak", "T_offset")
_DELINEATED = ("P_onset", "P_peak", "P_offset", "QRS_onset", "QRS_offset", "T_peak", "T_offset")
_COPIES = 4  # neurokit2 takes a heart rate from 4 R peaks or more
_DEEPEST_SCALE = 3  # the DWT steps' deepest base scale (T peaks: 3; P peaks, QRS, onsets and offsets: 2)
# neurokit2's T peak search ends twice this (its default, in s at 60 bpm, scaled by the heart rate) after R
_RT_DURATION = inspect.signature(_dwt._dwt_delineate_tp_peaks).parameters["rt_duration"].default
_ORDER = ("P_onset", "P_peak", "P_offset", "QRS_onset", "R", "QRS_offset", "T_peak", "T_offset")
MIN_BEATS = 3  # fewer R peaks than this in a record: nothing is measured
MIN_SECONDS = 0.75  # a shorter record measures nothing (neurokit2's R peak detector averages over 0.75 s)
_PRE = 0.4  # a median beat runs from 0.4 RR before its R peak to 0.6 RR after it


@lru_cache(maxsize=8)
def _highpass(sampling_rate: float) -> np.ndarray:
    return scipy_signal.butter(5, 0.5, btype="highpass", output="sos", fs=sampling_rate)


@lru_cache(maxsize=8)
def _highpass_state(sampling_rate: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The high-pass filter's sections, their steady-state initial conditions (n_sections, 2, 1) and the padding
    `scipy.signal.sosfiltfilt` gives them (three times the filter's taps)."""
    sos = _highpass(sampling_rate)
    taps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return sos, scipy_signal.sosfilt_zi(sos)[:, :, None], 3 * taps


def _high_passed(leads: np.ndarray, sampling_rate: float) -> np.ndarray:
    """`scipy.signal.sosfiltfilt(_highpass(rate), leads, axis=0)` to the bit, with the initial conditions it would
    solve for on every call (half its cost on a 10-s record) computed once per sampling rate."""
    sos, zi, edge = _highpass_state(sampling_rate)
    padded = np.concatenate((2 * leads[:1] - leads[edge:0:-1], leads, 2 * leads[-1:] - leads[-2:-edge - 2:-1]))
    forward, _ = scipy_signal.sosfilt(sos, padded, axis=0, zi=zi * padded[:1])
    backward, _ = scipy_signal.sosfilt(sos, forward[::-1], axis=0, zi=zi * forward[-1:])
    return backward[::-1][edge:-edge]


@dataclass(frozen=True)
class _Template:
    beats: np.ndarray  # (time, leads): each lead's median beat, one RR long
    r: int  # the R peak's index in it
    points: dict[str, int | None]  # offsets from R of the delineated points (R itself: 0)


def measure(sample: np.ndarray, channel_names: list[str], sampling_rate: float) -> dict[str, Any]:
    """The measurements of one ECG (time, leads), in uV, as the module docstring lists them."""
    leads = {name: i for i, name in enumerate(channel_names)}
    result: dict[str, Any] = {name: None for name in MEASUREMENTS} | {name: None for name in PER_LEAD}
    result["fiducials"] = {name: [] for name in FIDUCIALS}
    if len(sample) < max(MIN_SECONDS * sampling_rate, _highpass_state(sampling_rate)[2] + 1):
        return result  # shorter than the R peak detector's window or the filter's padding
    # the leads the delineation and the axes read, high-passed; every other lead's beats lose their own mean
    clean = [k for k in dict.fromkeys((leads.get("II", 0), leads.get("I"))) if k is not None]
    cleaned = _high_passed(sample[:, clean].astype(np.float64), sampling_rate)
    lead_ii = cleaned[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns about what it cannot find; that is a None here
        peaks = np.asarray(nk.ecg_findpeaks(lead_ii, sampling_rate=int(sampling_rate))["ECG_R_Peaks"], dtype=np.int64)
    if len(peaks) < MIN_BEATS:
        return result
    rr = np.diff(peaks) * (1000.0 / sampling_rate)
    rr_mean = float(rr.mean())
    result |= {"heart_rate": round(60000.0 / rr_mean, 1), "rr_mean": round(rr_mean, 1),
               "rr_sd": round(float(rr.std()), 1)}
    result["fiducials"]["R_peaks"] = peaks.tolist()
    template = _median_beat(sample, cleaned, clean, peaks, int(round(np.median(np.diff(peaks)))), sampling_rate)
    if template is None:
        return result
    points = template.points
    ms = 1000.0 / sampling_rate
    result["pr_interval"] = _span(points, "P_onset", "QRS_onset", ms)
    result["qrs_duration"] = _span(points, "QRS_onset", "QRS_offset", ms)
    qt = _span(points, "QRS_onset", "T_offset", ms)
    result["qt_interval"] = qt
    if qt is not None:
        rr_s = rr_mean / 1000.0
        result["qtc_bazett"] = round(qt / math.sqrt(rr_s), 1)
        result["qtc_fridericia"] = round(qt / rr_s ** (1 / 3), 1)
    result |= _axes(template, leads)
    result |= _amplitudes(template, channel_names)
    for name in _DELINEATED:
        offset = points.get(name)
        if offset is not None:
            result["fiducials"][name] = [int(p + offset) for p in peaks if 0 <= p + offset < len(sample)]
    return result


def _median_beat(sample: np.ndarray, cleaned: np.ndarray, clean: list[int], peaks: np.ndarray, rr: int,
                 sampling_rate: float) -> _Template | None:
    """Each lead's median beat and the delineation of lead II's (`cleaned`: the high-passed leads `clean` of
    `sample`, II first); None when too few beats fit in the record."""
    before = int(_PRE * rr)
    after = rr - before
    kept = peaks[(peaks - before >= 0) & (peaks + after <= len(sample))]
    if len(kept) < MIN_BEATS - 1:
        return None
    windows = kept[:, None] + np.arange(-before, after)[None, :]
    raw = sample[windows].astype(np.float32)  # (beats, time, leads)
    beats = _median(raw - raw.mean(axis=1, keepdims=True)).astype(np.float64)  # (time, leads)
    beats[:, clean] = _median(cleaned[windows])
    points = _delineate(beats[:, clean[0]], before, sampling_rate)
    return _Template(beats, before, _ordered(points))


def _median(beats: np.ndarray) -> np.ndarray:
    """np.median(beats, axis=0), from one sort (np.median's partitioning costs 4 times as much here)."""
    ordered = np.sort(beats, axis=0)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _delineate(beat: np.ndarray, r: int, sampling_rate: float) -> dict[str, int | None]:
    """Offsets from R of the points neurokit2's DWT delineator finds on the second of three copies of `beat`.

    These are the steps of `neurokit2.ecg_delineate(method="dwt")` (Martinez et al. 2004), called one by one:
    that function also finds Q and S peaks beat by beat through pandas (~40 ms) and refuses records under 4 s.
    Its QRS onset search ends at the Q peak (neurokit2: the last local minimum before R whose prominence exceeds 5 %
    of the range; here, whose depth below the baseline does, `_q_point`: on 100 ECGs of each of two seeds, QRS
    within 12 ms of the full-signal delineation for 79 % and 79 % of records against 75 % and 69 %, QT within
    20 ms for 71 % and 72 % against 66 % and 60 %; the lowest point of the 80 ms before R, used before, gave
    74 % / 64 % and 66 % / 61 %). neurokit2 resamples records to 2000 Hz first; the median beat is delineated at its
    own rate, which agrees as well with the full-signal delineation (tests/workers/test_ecg_measurements.py) at a
    quarter of the cost."""
    rate = int(sampling_rate)
    rr = len(beat)
    # neurokit2 searches the waves of every R peak it is given: they start at the second copy (the first is there for
    # the second's P onset search and its wavelet transform); the third and fourth only set the heart rate
    copies = np.tile(beat, _COPIES - 1)
    rpeaks = r + rr * np.arange(1, _COPIES + 1)
    q = _q_point(beat, r)
    qpeaks = [np.nan if q is None else rpeaks[0] + q] + [np.nan] * (_COPIES - 1)
    # the finest scales only: the steps below read scale 2 or 3 plus the heart rate's degree (neurokit2 computes 9,
    # for 2000 Hz; the coarsest cost the most and are never read at 500 Hz), each scale the same as among 9
    degree = _dwt._dwt_adjust_parameters(rpeaks, rate, target="degree")
    dwtmatr = _dwt._dwt_compute_multiscales(copies, max(1, _DEEPEST_SCALE + 1 + degree))
    # The P and T peak searches see the copies up to where the second copy's T peak search ends: the third copy's
    # searches begin past it, and the fourth's past the copies' end, with nothing to search (2 searches out of 8,
    # the second copy's, which are the same to the bit as over all the copies). The steps after skip a copy without
    # a P or T peak, so they too work on the second copy only.
    rt = _dwt._dwt_adjust_parameters(rpeaks, rate, duration=_RT_DURATION, target="duration")
    seen = int(rpeaks[0]) + 2 * int(rt * rate)
    tpeaks, ppeaks = _dwt._dwt_delineate_tp_peaks(copies[:seen], rpeaks, dwtmatr[:, :seen], sampling_rate=rate)
    qrs_on, qrs_off = _dwt._dwt_delineate_qrs_bounds(rpeaks, dwtmatr, ppeaks, tpeaks, qpeaks, sampling_rate=rate)
    p_on, p_off = _dwt._dwt_delineate_tp_onsets_offsets(ppeaks, rpeaks, dwtmatr, sampling_rate=rate)
    _, t_off = _dwt._dwt_delineate_tp_onsets_offsets(tpeaks, rpeaks, dwtmatr, sampling_rate=rate,
                                                     onset_weight=0.6, duration_onset=0.6)
    found = {"P_onset": p_on, "P_peak": ppeaks, "P_offset": p_off, "QRS_onset": qrs_on, "QRS_offset": qrs_off,
             "T_peak": tpeaks, "T_offset": t_off}
    points: dict[str, int | None] = {"R": 0}
    for name, values in found.items():
        value = values[0]  # the second copy's: a copy before it and after it, like any beat of a record
        points[name] = None if value is None or np.isnan(value) else int(value) - int(rpeaks[0])
    return points


def _q_point(beat: np.ndarray, r: int) -> int | None:
    """The offset from R of the beat's Q point: its last local minimum before R lying below the baseline by more
    than 5 % of the range before R; None when there is none (then there is no QRS onset either)."""
    left = beat[:r]
    minima, _ = scipy_signal.find_peaks(-left, height=0.05 * (left.max() - left.min()))
    return int(minima[-1]) - r if len(minima) else None


def _ordered(points: dict[str, int | None]) -> dict[str, int | None]:
    """Points out of their physiological order are not measurements: the later of each wrong pair is dropped."""
    last = None
    kept = dict(points)
    for name in _ORDER:
        value = kept.get(name)
        if value is None:
            continue
        if last is not None and value < last:
            kept[name] = None
            continue
        last = value
    return kept


def _span(points: dict[str, int | None], start: str, end: str, ms: float) -> float | None:
    a, b = points.get(start), points.get(end)
    return None if a is None or b is None else round((b - a) * ms, 1)


def _axes(template: _Template, leads: dict[str, int]) -> dict[str, float | None]:
    points, beats, r = template.points, template.beats, template.r
    axes: dict[str, float | None] = {"p_axis": None, "qrs_axis": None, "t_axis": None}
    if "I" not in leads or "II" not in leads or points.get("QRS_onset") is None:
        return axes
    lead_i, lead_ii = beats[:, leads["I"]], beats[:, leads["II"]]
    lead_avf = lead_ii - lead_i / 2
    onset = r + points["QRS_onset"]
    level_i, level_avf = lead_i[onset], lead_avf[onset]  # the PR segment's end: each wave's baseline
    for axis, (start, end) in {"p_axis": ("P_onset", "P_offset"), "qrs_axis": ("QRS_onset", "QRS_offset"),
                               "t_axis": ("QRS_offset", "T_offset")}.items():
        a, b = points.get(start), points.get(end)
        if a is None or b is None:
            continue
        window = slice(r + a, r + b + 1)
        area_i = float(np.sum(lead_i[window] - level_i))
        area_avf = float(np.sum(lead_avf[window] - level_avf))
        if area_i == 0 and area_avf == 0:
            continue
        axes[axis] = round(math.degrees(math.atan2(area_avf, area_i)), 1)
    return axes


def _amplitudes(template: _Template, channel_names: list[str]) -> dict[str, dict[str, int] | None]:
    points, beats, r = template.points, template.beats, template.r
    onset, offset = points.get("QRS_onset"), points.get("QRS_offset")
    if onset is None or offset is None:
        return {"r_amplitude": None, "s_amplitude": None}
    qrs = beats[r + onset: r + offset + 1] - beats[r + onset]
    peak = np.argmax(qrs, axis=0)
    r_amp = np.maximum(qrs.max(axis=0), 0)
    s_amp = [max(0.0, -float(qrs[p:, k].min())) for k, p in enumerate(peak)]
    return {"r_amplitude": {name: int(round(v)) for name, v in zip(channel_names, r_amp)},
            "s_amplitude": {name: int(round(v)) for name, v in zip(channel_names, s_amp)}}
