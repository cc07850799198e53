"""`"annotate": true`: every ECG comes with its measurements, in labels.csv, WFDB annotations, NDJSON and /stream."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import wfdb

from deepsynthbody.core.settings import Settings
from model_store import sizes
from model_store.store import open_store
from tests.api.test_generate_ecg import LEADS_12, download
from tests.conftest import CHUNK_SIZE, submit, wait_finished
from workers.annotations import label_columns
from workers.ecg_measurements import FIDUCIALS, MEASUREMENTS, measure

RATE = 500.0


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def test_labels_csv_and_wfdb_annotations_hold_each_records_measurements(client: httpx.Client, settings: Settings,
                                                                         tmp_path: Path) -> None:
    count = CHUNK_SIZE + 10  # two chunks: labels.csv is joined from both, one header
    created, archive, _ = download(client, {"num_samples": count, "seed": 7, "format": "wfdb", "leads": 12,
                                      "annotate": True})
    archive.extractall(tmp_path)
    records = sorted(n.removesuffix(".hea") for n in archive.namelist() if n.endswith(".hea"))
    samples = np.stack([wfdb.rdrecord(str(tmp_path / r), physical=False).d_signal for r in records])
    rows = list(csv.reader(io.StringIO(archive.read("labels.csv").decode())))
    assert rows[0] == label_columns(LEADS_12) and rows[0][2] == "heart_rate_bpm"
    assert [int(row[1]) for row in rows[1:]] == list(range(count))
    assert rows[1][0] == "ecg_00000"
    for index in (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, count - 1):  # measured again here, from the records read back
        measured = measure(samples[index], LEADS_12, RATE)
        expected = [_cell(measured[name]) for name in MEASUREMENTS]
        assert rows[1 + index][2:2 + len(MEASUREMENTS)] == expected
        assert rows[1 + index][rows[0].index("r_amplitude_V5_uV")] == _cell(measured["r_amplitude"]["V5"])
        annotation = wfdb.rdann(str(tmp_path / f"ecg_{index:05d}"), "atr")
        assert set(annotation.symbol) <= {"(", "p", ")", "N", "t"}
        assert annotation.sample[np.array(annotation.symbol) == "N"].tolist() == measured["fiducials"]["R_peaks"]
        assert annotation.sample[np.array(annotation.symbol) == "t"].tolist() == measured["fiducials"]["T_peak"]
        assert annotation.fs == RATE
    heart_rates = [float(row[2]) for row in rows[1:]]
    assert 40 < np.median(heart_rates) < 120
    manifest = json.loads(archive.read("manifest.json"))
    section = manifest["measurements"]
    assert section["definitions"]["heart_rate"]["unit"] == "bpm"
    assert section["definitions"]["qrs_duration"]["unit"] == "ms"
    assert section["definitions"]["r_amplitude"]["unit"] == "uV"
    assert section["fiducials"]["names"] == list(FIDUCIALS)
    assert "neurokit2" in section["method"]
    assert section["agreement"]["measurements"]["qt_interval"]["tolerance"] == 20  # what the model card says
    assert "labels.csv" in {f["name"] for f in manifest["files"]}
    # what the disk budget reserved for them (model_store.sizes) holds
    bound = sizes.measurements_bound(open_store(settings).resolve("cardiovascular", "ecg").manifest.output, 12)
    assert archive.getinfo("labels.csv").file_size <= count * bound
    assert all(archive.getinfo(n).file_size <= bound for n in archive.namelist() if n.endswith(".atr"))
    per_sample = list((settings.jobs_dir / created["job_id"] / "measurements").iterdir())
    assert len(per_sample) == count and all(p.stat().st_size <= bound for p in per_sample)


def test_ndjson_lines_and_the_stream_carry_the_same_measurements(client: httpx.Client) -> None:
    created, archive, _ = download(client, {"num_samples": 9, "seed": 11, "format": "json", "annotate": True})
    archived = archive.read("ecgs.ndjson")
    assert client.get(f"/jobs/{created['job_id']}/stream").content == archived
    for text in archived.decode().splitlines():
        line = json.loads(text)
        sample = np.array(list(line["leads"].values())).T
        assert line["measurements"] == measure(sample, list(line["leads"]), RATE)
        assert set(line["measurements"]["fiducials"]) == set(FIDUCIALS)
    assert "labels.csv" in archive.namelist()


def test_a_job_not_annotated_has_no_measurements(client: httpx.Client) -> None:
    created, archive, _ = download(client, {"num_samples": 3, "seed": 11, "format": "json"})
    assert "labels.csv" not in archive.namelist()
    assert "measurements" not in json.loads(archive.read("manifest.json"))
    assert all("measurements" not in json.loads(text) for text in archive.read("ecgs.ndjson").decode().splitlines())


def test_annotate_is_refused_by_a_model_that_measures_nothing(client: httpx.Client) -> None:
    response = client.post("/generate/digestive/gi-tract", json={"num_samples": 1, "annotate": True})
    assert response.status_code == 422, response.text
    assert "annotate" in response.text


def test_annotated_npy_archive_keeps_the_array_first(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 4, "seed": 3, "format": "npy", "annotate": True})
    assert wait_finished(client, created["job_id"])["status"] == "finished"
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
    assert archive.namelist()[:2] == ["ecgs.npy", "labels.csv"]
    assert len(archive.read("labels.csv").decode().splitlines()) == 5
