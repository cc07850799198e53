"""Over HTTP, a real worker: an ECG job in each format hospitals read gives an archive of files equal to the npy job's
samples (read by each format's own library), one file per ECG, each saying it is synthetic."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pyedflib
import pytest
from PIL import Image

from tests.conftest import submit, wait_finished

SYNTHETIC = "SYNTHETIC data made by DeepSynthBody model pulse2pulse-ecg version 2; no real person"


def _archive(client: httpx.Client, body: dict) -> zipfile.ZipFile:
    created = submit(client, body)
    job = wait_finished(client, created["job_id"])
    assert job["status"] == "finished", job
    response = client.get(f"/jobs/{created['job_id']}/result")
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    return archive


@pytest.fixture(scope="module")
def npy(client: httpx.Client) -> dict[int, np.ndarray]:
    """The reference: the same requests' samples as npy, by lead count."""
    arrays = {}
    for leads in (8, 12):
        archive = _archive(client, {"num_samples": 3, "seed": 11, "format": "npy", "leads": leads})
        arrays[leads] = np.load(io.BytesIO(archive.read("ecgs.npy")))
    return arrays


def _files(archive: zipfile.ZipFile, suffix: str) -> list[str]:
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["synthetic"] == ("Every sample here is synthetic, made by model pulse2pulse-ecg version 2: "
                                     "none is a recording of a real person.")
    names = sorted(n for n in archive.namelist() if n != "manifest.json")
    assert names == [f"ecg_{i:05d}.{suffix}" for i in range(3)]
    assert sorted(f["name"] for f in manifest["files"]) == names
    return names


@pytest.mark.parametrize("leads", [8, 12])
def test_edf_job_equals_npy(client: httpx.Client, npy: dict[int, np.ndarray], leads: int, tmp_path: Path) -> None:
    archive = _archive(client, {"num_samples": 3, "seed": 11, "format": "edf", "leads": leads})
    for index, name in enumerate(_files(archive, "edf")):
        (tmp_path / name).write_bytes(archive.read(name))
        reader = pyedflib.EdfReader(str(tmp_path / name))
        try:
            values = np.stack([reader.readSignal(k) for k in range(reader.signals_in_file)], 1)
            assert np.array_equal(values, npy[leads][index])
            assert reader.getPatientName() == "SYNTHETIC"
            assert reader.getPatientAdditional() == "not_a_real_person_pulse2pulse-ecg_v2"
        finally:
            reader.close()


@pytest.mark.parametrize("leads", [8, 12])
def test_dicom_job_equals_npy(client: httpx.Client, npy: dict[int, np.ndarray], leads: int) -> None:
    archive = _archive(client, {"num_samples": 3, "seed": 11, "format": "dicom", "leads": leads})
    for index, name in enumerate(_files(archive, "dcm")):
        ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert np.array_equal(ds.waveform_array(0), npy[leads][index])
        assert ds.PatientComments == SYNTHETIC and str(ds.PatientName).startswith("SYNTHETIC")


def test_png_job_is_one_printout_per_ecg(client: httpx.Client) -> None:
    archive = _archive(client, {"num_samples": 3, "seed": 11, "format": "png"})
    for index, name in enumerate(_files(archive, "png")):
        Image.open(io.BytesIO(archive.read(name))).verify()  # every chunk and its CRC
        page = Image.open(io.BytesIO(archive.read(name)))
        assert page.size == (1753, 1240) and page.text["Subject"] == SYNTHETIC
        assert page.text["Title"] == f"Synthetic 12-lead ECG ecg_{index:05d}"


def test_pdf_job_is_one_printout_per_ecg(client: httpx.Client) -> None:
    archive = _archive(client, {"num_samples": 3, "seed": 11, "format": "pdf", "leads": 12})
    for name in _files(archive, "pdf"):
        data = archive.read(name)
        assert data.startswith(b"%PDF-") and re.search(rb"/Subject \(" + re.escape(SYNTHETIC.encode()) + rb"\)", data)


def _labels(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))


def test_annotated_edf_job_carries_labels_csv_measurements(client: httpx.Client, tmp_path: Path) -> None:
    archive = _archive(client, {"num_samples": 2, "seed": 11, "format": "edf", "annotate": True})
    labels = _labels(archive)
    assert [row["record"] for row in labels] == ["ecg_00000", "ecg_00001"]
    for row in labels:
        (tmp_path / "x.edf").write_bytes(archive.read(f"{row['record']}.edf"))
        reader = pyedflib.EdfReader(str(tmp_path / "x.edf"))
        try:
            onsets, durations, texts = reader.readAnnotations()
        finally:
            reader.close()
        assert f"HR {float(row['heart_rate_bpm']):g} bpm" in texts
        assert f"QRS {float(row['qrs_duration_ms']):g} ms" in texts
        r_peaks = sorted(round(onset * 500) for onset, text in zip(onsets, texts) if text == "R peak")
        assert len(r_peaks) >= 5  # ten seconds of a resting heart, each R peak a point annotation
        assert all(0 < b - a < 2 * 500 for a, b in zip(r_peaks, r_peaks[1:]))


def test_annotated_dicom_job_carries_labels_csv_measurements(client: httpx.Client) -> None:
    archive = _archive(client, {"num_samples": 2, "seed": 11, "format": "dicom", "annotate": True})
    for row in _labels(archive):
        ds = pydicom.dcmread(io.BytesIO(archive.read(f"{row['record']}.dcm")))
        values = {item.ConceptNameCodeSequence[0].CodeMeaning: float(item.NumericValue)
                  for item in ds.WaveformAnnotationSequence}
        assert values["Heart rate"] == pytest.approx(float(row["heart_rate_bpm"]))
        assert values["PR interval global"] == pytest.approx(float(row["pr_interval_ms"]))
