"""The service's ECGs are statistically the original deepfake-ecg package's ECGs (same model, other noise)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import deepfakeecg
import neurokit2 as nk
import numpy as np
import torch

from deepsynthbody.core.jobs import JobSpec
from deepsynthbody.core.settings import Settings
from workers import tasks

COUNT = 40


def _heart_rates(ecgs: np.ndarray) -> np.ndarray:
    """Mean heart rate of each ECG from lead II (column 1), R peaks found by neurokit2."""
    rates = []
    for ecg in ecgs:
        cleaned = nk.ecg_clean(ecg[:, 1].astype(float), sampling_rate=500)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=500)
        peaks = info["ECG_R_Peaks"]
        rates.append(60 * 500 / np.median(np.diff(peaks)))
    return np.array(rates)


def test_service_ecgs_match_the_original_package(settings: Settings, ecg_model_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    deepfakeecg.generate(COUNT, str(tmp_path))
    original = np.stack([np.loadtxt(tmp_path / f"{i}.asc") for i in range(COUNT)])

    spec = JobSpec(job_id="vs-original", model_id="pulse2pulse-ecg", model_version=1, num_samples=COUNT,
                   seed=0, format="npy", params={"leads": 8}, precision="fp32", request={}, chunks=[(0, COUNT)])
    tasks.run(spec, settings)
    with zipfile.ZipFile(settings.jobs_dir / "vs-original" / "result.zip") as result, result.open("ecgs.npy") as npy:
        ours = np.load(io.BytesIO(npy.read())).astype(float)

    assert ours.shape == original.shape == (COUNT, 5000, 8)
    # amplitude per lead: standard deviation and peak-to-peak, medians over ECGs within 20%
    for stat in (lambda x: x.std(axis=1), lambda x: np.ptp(x, axis=1)):
        ours_stat, orig_stat = np.median(stat(ours), axis=0), np.median(stat(original), axis=0)
        assert np.all(np.abs(ours_stat - orig_stat) <= 0.2 * orig_stat), (ours_stat, orig_stat)
    ours_hr, orig_hr = _heart_rates(ours), _heart_rates(original)
    assert abs(np.median(ours_hr) - np.median(orig_hr)) < 8, (np.median(ours_hr), np.median(orig_hr))
    assert 45 < np.median(ours_hr) < 100
