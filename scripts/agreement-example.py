"""One ECG where the median-beat QT and neurokit2's full-signal delineation disagree, drawn (README "Checked against"):
lead II with the reference's per-beat points, and the median beat with its own.

    .venv/bin/python scripts/agreement-example.py --seed 42 --index 1 --out docs/agreement-example.png

Builds the ECG model from its recipe into a temporary folder (a few seconds), makes the sample, measures it the
worker's way and delineates it the test's way (tests/workers/test_ecg_measurements.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import matplotlib
import neurokit2 as nk
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepsynthbody.core.settings import Settings  # noqa: E402
from model_store.build import build  # noqa: E402
from model_store.store import open_store  # noqa: E402
from workers import ecg_measurements, runtime  # noqa: E402

RATE = 500.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/agreement-example.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data))
        build(open_store(settings))
        entry = open_store(settings).resolve("cardiovascular", "ecg")
        params = {"leads": 12}
        sample = runtime.load(entry, settings).samples(args.seed, args.index, 1, params)[0]
        names = entry.manifest.output.channel_names(params)
    measured = ecg_measurements.measure(sample, names, RATE)
    lead_ii = ecg_measurements._high_passed(sample[:, [names.index("II")]].astype(np.float64), RATE)[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(lead_ii, sampling_rate=int(RATE))
        _, waves = nk.ecg_delineate(lead_ii, info["ECG_R_Peaks"], sampling_rate=int(RATE), method="dwt")
    reference = {key: np.asarray(values, dtype=float) for key, values in waves.items()}
    reference["ECG_R_Peaks"] = np.asarray(info["ECG_R_Peaks"], dtype=float)
    draw(lead_ii, measured, reference, args)
    print(f"wrote {args.out}")


def draw(lead_ii: np.ndarray, measured: dict, reference: dict[str, np.ndarray], args: argparse.Namespace) -> None:
    ms = 1000.0 / RATE
    seconds = np.arange(len(lead_ii)) / RATE
    onsets, t_peaks, t_offsets = (reference[k] for k in ("ECG_R_Onsets", "ECG_T_Peaks", "ECG_T_Offsets"))
    n = min(len(onsets), len(t_offsets))
    per_beat_qt = (t_offsets[:n] - onsets[:n]) * ms
    fiducials = measured["fiducials"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 7.5), gridspec_kw={"height_ratios": [1, 1.15]})
    top.plot(seconds, lead_ii / 1000, color="0.2", lw=0.7)
    for key, values, style, color in (("QRS onset", onsets, "^", "tab:green"), ("T peak", t_peaks, "o", "tab:purple"),
                                      ("T offset", t_offsets, "x", "tab:red")):
        found = values[np.isfinite(values)].astype(int)
        top.plot(found / RATE, lead_ii[found] / 1000, style, color=color, ms=6, mew=2,
                 label=f"reference's {key}, beat by beat")
    for key, color in (("QRS_onset", "tab:green"), ("T_offset", "tab:red")):
        for point in fiducials[key]:
            top.axvline(point / RATE, color=color, lw=0.8, ls="--")
    top.set(xlabel="s", ylabel="lead II, mV", xlim=(0, seconds[-1]),
            title=f"seed {args.seed}, sample {args.index}: QT {measured['qt_interval']:.0f} ms on the median beat "
                  f"(dashed lines: its QRS onset and T offset on every beat); the reference's per-beat QT "
                  f"{np.nanmin(per_beat_qt):.0f}-{np.nanmax(per_beat_qt):.0f} ms, median {np.nanmedian(per_beat_qt):.0f}")
    top.title.set_fontsize(9)
    top.legend(loc="upper right", fontsize=8, ncols=3)
    # the median beat and the beats it is the median of, from 0.4 RR before R to 0.6 RR after
    peaks = np.asarray(fiducials["R_peaks"])
    rr = int(round(np.median(np.diff(peaks))))
    before = int(ecg_measurements._PRE * rr)
    kept = peaks[(peaks - before >= 0) & (peaks + rr - before <= len(lead_ii))]
    beats = lead_ii[kept[:, None] + np.arange(-before, rr - before)[None, :]]
    t = (np.arange(-before, rr - before)) * ms
    bottom.plot(t, beats.T / 1000, color="0.8", lw=0.6)
    bottom.plot(t, np.median(beats, axis=0) / 1000, color="black", lw=1.6, label="median beat")
    for key, color in (("QRS_onset", "tab:green"), ("T_peak", "tab:purple"), ("T_offset", "tab:red")):
        if fiducials[key]:  # the same offset from every beat's R peak: the difference found most often
            differences = (np.asarray(fiducials[key])[:, None] - peaks[None, :]).ravel()
            values, counts = np.unique(differences[np.abs(differences) < rr], return_counts=True)
            bottom.axvline(values[np.argmax(counts)] * ms, color=color, lw=1.4,
                           label=f"median beat's {key.replace('_', ' ')}")
    for key, color in (("ECG_T_Offsets", "tab:red"), ("ECG_T_Peaks", "tab:purple")):
        rel = [(v - r) * ms for v, r in zip(reference[key], reference["ECG_R_Peaks"]) if np.isfinite(v)
               and -before <= v - r < rr - before]
        bottom.plot(rel, np.full(len(rel), bottom.get_ylim()[0] + 0.02), "|", color=color, ms=14, mew=2)
    bottom.set(xlabel="ms from R (ticks at the bottom: the reference's T peaks and T offsets, one per beat)",
               ylabel="mV", xlim=(t[0], t[-1]))
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
