"""ECG measurements on the median beat, checked against neurokit2's own full-signal delineation of the same ECGs
(`model_store.recipes.ecg_agreement`, which says what the reference is: the same comparison the model card
publishes).
"""

from __future__ import annotations

import importlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import neurokit2 as nk
import numpy as np
import pytest
from scipy import signal as scipy_signal

from deepsynthbody.core.settings import Settings
from model_store import distributions
from model_store.recipes import ecg_agreement
from model_store.recipes.ecg_agreement import ISSUE_TOLERANCES, SHORT_T_TAIL
from model_store.store import open_store
from workers import ecg_measurements, runtime
from workers.ecg_measurements import FIDUCIALS, MEASUREMENTS, PER_LEAD, measure

# neurokit2's DWT steps, which the measurement calls on the median beat (see `_beat_by_beat`)
_dwt = importlib.import_module("neurokit2.ecg.ecg_delineate")

RATE = 500.0
COUNT, SEED = ecg_agreement.SAMPLES, ecg_agreement.SEED  # the ECGs the model card's agreement compares


@pytest.fixture(scope="module")
def ecgs(settings: Settings, ecg_model_dir: Path) -> tuple[np.ndarray, list[str]]:
    entry = open_store(settings).resolve("cardiovascular", "ecg")
    model = runtime.load(entry, settings)
    params = {"leads": 12}
    return model.samples(SEED, 0, COUNT, params), entry.manifest.output.channel_names(params)


def _beat_by_beat(lead_ii: np.ndarray) -> dict[str, float]:
    """The measurement's own steps on every beat instead of the median beat: the same high-pass, R peaks, Q point
    (over the same 0.4 RR before each R) and DWT steps at 500 Hz, over the whole record; QRS and QT the median of
    the per-beat values. Where it agrees with the reference and the median beat does not, the gap is the median
    beat's; `seconds` is what it costs beside the measurement."""
    start = time.perf_counter()
    cleaned = ecg_measurements._high_passed(lead_ii[:, None].astype(np.float64), RATE)[:, 0]
    rate = int(RATE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peaks = np.asarray(nk.ecg_findpeaks(cleaned, sampling_rate=rate)["ECG_R_Peaks"], dtype=np.int64)
        before = int(0.4 * np.median(np.diff(peaks)))
        qpeaks = [np.nan] * len(peaks)
        for i, r in enumerate(peaks):
            q = ecg_measurements._q_point(cleaned[max(0, r - before):r + 1], min(r, before))
            qpeaks[i] = np.nan if q is None else r + q
        degree = _dwt._dwt_adjust_parameters(peaks, rate, target="degree")
        dwtmatr = _dwt._dwt_compute_multiscales(cleaned, max(1, ecg_measurements._DEEPEST_SCALE + 1 + degree))
        tpeaks, ppeaks = _dwt._dwt_delineate_tp_peaks(cleaned, peaks, dwtmatr, sampling_rate=rate)
        onsets, offsets = _dwt._dwt_delineate_qrs_bounds(peaks, dwtmatr, ppeaks, tpeaks, qpeaks, sampling_rate=rate)
        _, t_offsets = _dwt._dwt_delineate_tp_onsets_offsets(tpeaks, peaks, dwtmatr, sampling_rate=rate,
                                                             onset_weight=0.6, duration_onset=0.6)
        onsets, offsets, t_offsets = (np.asarray(v, dtype=float) for v in (onsets, offsets, t_offsets))
        ms = 1000.0 / RATE
        return {"qrs_duration": float(np.nanmedian((offsets - onsets) * ms)),
                "qt_interval": float(np.nanmedian((t_offsets - onsets) * ms)), "seconds": time.perf_counter() - start}


def _halves_apart(beats: np.ndarray) -> float:
    """How far the reference's median over a record's odd beats is from its median over the even ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return abs(float(np.nanmedian(beats[0::2]) - np.nanmedian(beats[1::2])))


@pytest.fixture(scope="module")
def compared(ecgs: tuple[np.ndarray, list[str]]) -> tuple[list[dict[str, Any]], list[float], list[dict[str, Any]],
                                                          dict[str, dict[str, Any]]]:
    """Each ECG's measurements, what each cost (s), the reference's for the same ECG, and the comparison."""
    samples, names = ecgs
    measured, seconds = [], []
    for sample in samples:
        start = time.perf_counter()
        measured.append(measure(sample, names, RATE))
        seconds.append(time.perf_counter() - start)
    references = [ecg_agreement.reference(sample, names, RATE) for sample in samples]
    return measured, seconds, references, ecg_agreement.compare(measured, references, names, RATE)


def _table(rows: dict[str, dict[str, Any]], *extra: tuple[str, dict[str, str]]) -> None:
    """The comparison as the README's table, with extra columns (header, value by measurement)."""
    print("| measurement | tolerance | within | median difference | 90th pct. abs. difference | not measured |"
          + "".join(f" {header} |" for header, _ in extra))
    for key, row in rows.items():
        print(f"| {key} | {row['tolerance']:g} {row['unit']} | {row['within']:.0%} | {row['median_difference']:+.1f} "
              f"| {row['p90_abs_difference']:.1f} | {row['not_measured']} |" + "".join(
                  f" {values.get(key, '-')} |" for _, values in extra))


def test_agrees_with_the_full_signal_delineation(ecgs: tuple[np.ndarray, list[str]], compared: Any) -> None:
    samples, names = ecgs
    lead_ii = names.index("II")
    measured, measure_seconds, references, rows = compared
    beat_by_beat = [_beat_by_beat(sample[:, lead_ii]) for sample in samples]
    halves, every_beat = {}, {}
    for key, (tolerance, _) in ISSUE_TOLERANCES.items():
        apart = np.array([_halves_apart(r["beats"][key]) for r in references if key in r["beats"]])
        if len(apart):
            halves[key] = f"{np.mean(apart <= tolerance):.0%}"
        diffs = np.array([b[key] - r[key] for b, r in zip(beat_by_beat, references) if key in b])
        if len(diffs):
            every_beat[key] = float(np.mean(np.abs(diffs) <= tolerance))
    print(f"\nagreement with {ecg_agreement.described()}, {COUNT} ECGs (seed {SEED}):")
    _table({key: rows[key] for key in ISSUE_TOLERANCES},
           ("reference's odd beats within tolerance of its even beats", halves),
           ("the same steps on every beat: within", {key: f"{v:.0%}" for key, v in every_beat.items()}))
    print(f"delineating every beat: {np.median([b['seconds'] for b in beat_by_beat]) * 1000:.1f} ms per ECG (median), "
          f"the whole measurement on the median beat {np.median(measure_seconds) * 1000:.1f} ms")
    reference_tails = np.concatenate([r["t_tails"] for r in references])
    tails = np.array([(m["fiducials"]["T_offset"][0] - m["fiducials"]["T_peak"][0]) * 1000.0 / RATE
                      for m in measured if m["fiducials"]["T_offset"] and m["fiducials"]["T_peak"]])
    plausible = np.array([m["qt_interval"] - r["qt_without_short_tails"] for m, r in zip(measured, references)
                          if m["qt_interval"] is not None], dtype=float)
    print(f"T offset {SHORT_T_TAIL:g} ms or less after the T peak: {np.mean(reference_tails <= SHORT_T_TAIL):.0%} of "
          f"the reference's beats, {np.mean(tails <= SHORT_T_TAIL):.0%} of the median beats; QT within 20 ms of the "
          f"reference's median over its other beats: {np.mean(np.abs(plausible) <= 20):.0%}")
    assert np.mean(tails <= SHORT_T_TAIL) <= 0.05
    assert rows["heart_rate"]["within"] >= 0.9  # the issue's target, met
    # The issue's 90 % for QRS and QT is not met (measured here 75 % and 70 %, medians +2 and +9 ms): delineating
    # the median beat's waveform is not taking the median of each beat's delineation. The model's beats vary within
    # a record and the delineator places some beats' points oddly (a T offset on the T wave): the reference's median
    # over a record's odd beats is within tolerance of its median over the even ones for only 78 % (QRS) and 75 %
    # (QT) of records. These floors keep what was measured from getting worse.
    assert rows["qrs_duration"]["within"] >= 0.7 and abs(rows["qrs_duration"]["median_difference"]) <= 6
    assert rows["qt_interval"]["within"] >= 0.65 and abs(rows["qt_interval"]["median_difference"]) <= 12
    # The same steps, Q point and rate on every beat agree far better (measured 92 % and 88 %): what keeps QRS and
    # QT from 90 % is mostly the median beat itself, which the issue asks for (delineating every beat costs more
    # than the whole measurement, the line printed above)
    for key in ("qrs_duration", "qt_interval"):
        assert every_beat[key] >= rows[key]["within"] + 0.1, key


# the shares within tolerance measured (60 ECGs of seed 42, neurokit2 0.3.0), less about 5 points: they keep what was
# measured from getting worse. The median beat's P and T offsets and its P onset are where it agrees least, as QT.
FLOORS = {"rr_mean": 1.0, "rr_sd": 1.0, "pr_interval": 0.55, "qtc_bazett": 0.6, "qtc_fridericia": 0.6,
          "p_axis": 0.65, "qrs_axis": 0.9, "t_axis": 0.8, "r_amplitude (each lead)": 0.85,
          "s_amplitude (each lead)": 0.8, "P_onset (each beat)": 0.55, "P_peak (each beat)": 0.85,
          "P_offset (each beat)": 0.5, "QRS_onset (each beat)": 0.8, "QRS_offset (each beat)": 0.9,
          "T_peak (each beat)": 0.9, "T_offset (each beat)": 0.6}


def test_every_other_measurement_agrees_with_the_same_delineation(compared: Any) -> None:
    """RR, PR, QTc, the axes, R and S amplitudes in every lead and every beat's fiducial points, against the same
    reference taken beat by beat."""
    measured, _, references, rows = compared
    assert all(m["fiducials"]["R_peaks"] == r["r_peaks"].tolist() for m, r in zip(measured, references))
    print(f"\nthe other measurements against the same delineation, {COUNT} ECGs (seed {SEED}); R peaks: the same in "
          "every record")
    _table({key: row for key, row in rows.items() if key not in ISSUE_TOLERANCES})
    assert set(FLOORS) == set(rows) - set(ISSUE_TOLERANCES)
    # what the model card publishes (the distributions recipe's `agreement`) is this comparison: the same ECGs
    published = json.loads(distributions.DOCUMENTS["pulse2pulse-ecg"].read_text())["agreement"]
    assert (published["samples"], published["seed"]) == (COUNT, SEED) and set(published["measurements"]) == set(rows)
    for key, row in rows.items():  # up to what a different CPU's arithmetic may move
        assert published["measurements"][key]["within"] == pytest.approx(row["within"], abs=0.05), key
    for key, floor in FLOORS.items():
        assert rows[key]["within"] >= floor, key


def test_every_measurement_is_there_in_its_unit_and_fiducials_are_in_order(ecgs: tuple[np.ndarray, list[str]]) -> None:
    samples, names = ecgs
    for sample in samples[:10]:
        result = measure(sample, names, RATE)
        assert set(result) == set(MEASUREMENTS) | set(PER_LEAD) | {"fiducials"}
        assert set(result["fiducials"]) == set(FIDUCIALS)
        assert 30 < result["heart_rate"] < 200
        assert abs(result["heart_rate"] - 60000 / result["rr_mean"]) < 0.1
        if result["qt_interval"] is None:
            continue
        assert 40 <= result["qrs_duration"] <= 200 and result["qrs_duration"] < result["qt_interval"] < 700
        rr = result["rr_mean"] / 1000
        assert result["qtc_bazett"] == pytest.approx(result["qt_interval"] / rr**0.5, abs=0.06)
        for axis in ("p_axis", "qrs_axis", "t_axis"):
            assert result[axis] is None or -180 <= result[axis] <= 180
        assert set(result["r_amplitude"]) == set(names) and all(v >= 0 for v in result["s_amplitude"].values())
        fiducials = result["fiducials"]
        for name, points in fiducials.items():
            assert all(0 <= p < len(sample) for p in points), name
        # beat by beat, the points follow one another as a beat's waves do
        for r in fiducials["R_peaks"][1:-1]:
            beat = [min(fiducials[n], key=lambda p: abs(p - r)) for n in
                    ("P_onset", "P_peak", "P_offset", "QRS_onset", "QRS_offset", "T_peak", "T_offset")]
            assert beat == sorted(beat) and beat[3] < r < beat[4]


def test_the_axes_are_those_of_the_limb_leads_whatever_leads_the_sample_has(ecgs: tuple[np.ndarray, list[str]]) -> None:
    samples, names = ecgs
    eight = [names.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
    for sample in samples[:5]:
        twelve = measure(sample, names, RATE)
        only_eight = measure(sample[:, eight], [names[i] for i in eight], RATE)
        for key in ("qrs_axis", "p_axis", "t_axis", "qrs_duration", "heart_rate"):
            assert twelve[key] == only_eight[key]
        lead_i = twelve["r_amplitude"]["I"] - twelve["s_amplitude"]["I"]
        if twelve["qrs_axis"] is not None and abs(twelve["qrs_axis"]) < 60:
            assert lead_i > 0  # an axis near 0 degrees: lead I's QRS is mostly positive


def test_what_cannot_be_measured_is_null(ecgs: tuple[np.ndarray, list[str]]) -> None:
    samples, names = ecgs
    flat = measure(np.zeros((5000, len(names)), dtype=np.int16), names, RATE)
    two_beats = measure(samples[0][:int(1.6 * RATE)], names, RATE)  # fewer than 3 R peaks: no RR statistics
    # shorter than the high-pass filter's padding, and than the R peak detector's window
    blips = [measure(samples[0][:length], names, RATE) for length in (0, 1, 18, 19, 20, 374)]
    for result in (flat, two_beats, *blips):
        assert all(result[key] is None for key in [*MEASUREMENTS, *PER_LEAD])
        assert all(points == [] for points in result["fiducials"].values())


@pytest.mark.parametrize("rate", [250.0, 500.0, 1000.0])
def test_the_high_pass_is_scipys_filtfilt_to_the_bit(ecgs: tuple[np.ndarray, list[str]], rate: float) -> None:
    samples, names = ecgs
    leads = samples[3][:, [names.index("II"), names.index("I")]].astype(np.float64)
    sos = ecg_measurements._highpass(rate)
    assert np.array_equal(ecg_measurements._high_passed(leads, rate), scipy_signal.sosfiltfilt(sos, leads, axis=0))
    assert np.array_equal(ecg_measurements._high_passed(leads[:, :1], rate)[:, 0],
                          scipy_signal.sosfiltfilt(sos, leads[:, 0]))


def test_remembered_heart_rate_parameters_are_neurokit2s() -> None:
    """The DWT steps' heart-rate parameters, remembered for a median beat's copies, are what neurokit2 computes,
    for every kind of peaks it is given (a record's are computed each time)."""
    adjust = _dwt._dwt_adjust_parameters
    assert adjust.remembering and adjust.__wrapped__ is not adjust
    copies = 200 + 415 * np.arange(1, 5)
    record = np.cumsum(np.r_[120, np.random.default_rng(3).integers(380, 460, 11)])
    for peaks in (copies, copies.tolist(), copies.astype(np.int32), record, 100 + 250 * np.arange(1, 5)):
        for rate in (500, 1000):
            for kwargs in ({"target": "degree"}, {"duration": 0.25, "target": "duration"},
                           {"duration": 0.6, "target": "duration"}):
                expected = adjust.__wrapped__(np.asarray(peaks), rate, **kwargs)
                assert adjust(peaks, rate, **kwargs) == expected == adjust(peaks, rate, **kwargs)
                assert type(adjust(peaks, rate, **kwargs)) is type(expected)
