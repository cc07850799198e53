"""End to end over HTTP: submit, poll, download, read back, stream; a real worker and a real Redis."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import wfdb
from redis import Redis

from app.routes.generate import _new_job_id_and_seed
from deepsynthbody.core.settings import Settings
from model_store.store import open_store
from tests.conftest import ECG, submit, wait_finished, wait_generating

LEADS_8 = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def download(client: httpx.Client, body: dict) -> tuple[dict, zipfile.ZipFile, httpx.Response]:
    created = submit(client, body)
    job = wait_finished(client, created["job_id"])
    assert job["status"] == "finished", job
    response = client.get(f"/jobs/{created['job_id']}/result")
    assert response.status_code == 200, response.text
    return created, zipfile.ZipFile(io.BytesIO(response.content)), response


def read_samples(archive: zipfile.ZipFile, fmt: str, tmp_path: Path) -> np.ndarray:
    """Every format back to one (N, 5000, leads) array, each read with its own reader."""
    names = sorted(n for n in archive.namelist() if n != "manifest.json")
    if fmt == "npy":
        return np.load(io.BytesIO(archive.read(names[0])))
    if fmt == "json":
        lines = archive.read(names[0]).decode().splitlines()
        return np.stack([np.array(list(json.loads(line)["leads"].values())).T for line in lines])
    if fmt == "csv":
        return np.stack([np.loadtxt(io.BytesIO(archive.read(n)), delimiter=",", skiprows=1) for n in names])
    if fmt == "asc":
        return np.stack([np.loadtxt(io.BytesIO(archive.read(n))) for n in names])
    archive.extractall(tmp_path)
    records = sorted({n.rsplit(".", 1)[0] for n in names})
    return np.stack([wfdb.rdrecord(str(tmp_path / r), physical=False).d_signal for r in records])


def test_wfdb_flow_reads_back_with_wfdb(client: httpx.Client, tmp_path: Path) -> None:
    created, archive, response = download(client, {"num_samples": 20, "seed": 42, "format": "wfdb"})
    assert created["seed"] == 42 and created["status"] == "queued"
    assert response.headers["content-type"] == "application/zip"
    assert "deepsynthbody_pulse2pulse-ecg-v2_n20_seed42_wfdb" in response.headers["content-disposition"]

    manifest = json.loads(archive.read("manifest.json"))
    assert len(manifest["files"]) == 40  # .hea + .dat per record
    for entry in manifest["files"]:
        assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == entry["sha256"]
    assert manifest["seed"] == 42 and manifest["job_id"] == created["job_id"]
    assert manifest["output"]["unit"] == "uV" and manifest["output"]["sampling_rate"] == 500.0
    assert manifest["output"]["leads"] == LEADS_8
    assert manifest["execution_provider"] == "CPUExecutionProvider"
    assert manifest["model"]["sha256"] and manifest["citations"] and manifest["license"].startswith("MIT")

    archive.extractall(tmp_path)
    record = wfdb.rdrecord(str(tmp_path / "ecg_00000"))
    assert record.fs == 500 and record.sig_len == 5000 and record.sig_name == LEADS_8
    assert record.units == ["mV"] * 8 and record.fmt == ["16"] * 8 and record.adc_gain == [1000.0] * 8
    physical = record.p_signal
    assert np.abs(physical).max() <= 6.0  # tanh * 6000 uV
    assert 0.2 < np.abs(physical).max()  # a real ECG, not silence: R waves are around 1-2 mV
    assert np.abs(physical).mean() < 1.0


def test_same_seed_same_ecgs_in_every_format_and_lead_count(client: httpx.Client, tmp_path: Path) -> None:
    arrays = {}
    for fmt in ("npy", "wfdb", "csv", "asc", "json"):
        _, archive, _ = download(client, {"num_samples": 9, "seed": 7, "format": fmt, "leads": 12})
        arrays[fmt] = read_samples(archive, fmt, tmp_path / fmt)
    reference = arrays["npy"]
    assert reference.shape == (9, 5000, 12) and reference.dtype == np.int16
    for fmt, values in arrays.items():
        np.testing.assert_array_equal(values, reference, err_msg=fmt)

    _, archive, _ = download(client, {"num_samples": 9, "seed": 7, "format": "npy", "leads": 8})
    eight = read_samples(archive, "npy", tmp_path)
    np.testing.assert_array_equal(eight, reference[:, :, [LEADS_12.index(n) for n in LEADS_8]])

    as_float = reference.astype(float)
    lead = {name: as_float[:, :, i] for i, name in enumerate(LEADS_12)}
    # the derived leads are rounded from the unrounded limb leads: within 1 uV of the formulas on rounded values
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 1
    assert np.abs(lead["aVR"] + (lead["I"] + lead["II"]) / 2).max() <= 1
    assert np.abs(lead["aVL"] - (lead["I"] - lead["II"] / 2)).max() <= 1
    assert np.abs(lead["aVF"] - (lead["II"] - lead["I"] / 2)).max() <= 1


def test_asc_keeps_the_original_layout(client: httpx.Client) -> None:
    _, archive, _ = download(client, {"num_samples": 2, "seed": 1, "format": "asc"})
    text = archive.read("ecg_00000.asc").decode()
    rows = text.splitlines()
    assert len(rows) == 5000
    assert all(len(row.split(" ")) == 8 for row in rows)
    assert all(field.lstrip("-").isdigit() for field in rows[0].split(" "))


def test_csv_has_a_header_of_lead_names(client: httpx.Client) -> None:
    _, archive, _ = download(client, {"num_samples": 1, "seed": 1, "format": "csv", "leads": 12})
    rows = archive.read("ecg_00000.csv").decode().splitlines()
    assert rows[0] == ",".join(LEADS_12) and len(rows) == 5001


def test_same_request_twice_gives_identical_data_files(client: httpx.Client) -> None:
    contents = []
    for _ in range(2):
        _, archive, _ = download(client, {"num_samples": 10, "seed": 99, "format": "wfdb"})
        contents.append({n: archive.read(n) for n in archive.namelist() if n != "manifest.json"})
    assert contents[0] == contents[1]


def test_service_picks_a_seed_and_reports_it(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 1, "format": "npy"})
    assert isinstance(created["seed"], int) and 0 <= created["seed"] < 2**53
    job = wait_finished(client, created["job_id"])
    assert job["seed"] == created["seed"] == job["request"]["seed"]


def test_job_ids_are_random_hex_and_picked_seeds_use_all_53_bits() -> None:
    drawn = [_new_job_id_and_seed() for _ in range(2000)]
    ids, seeds = [job_id for job_id, _ in drawn], [seed for _, seed in drawn]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(0 <= s <= 2**53 - 1 for s in seeds) and max(seeds) >= 2**52 and len(set(seeds)) == len(seeds)


def test_job_resource_reports_progress_and_timestamps(client: httpx.Client) -> None:
    response = client.post(ECG, json={"num_samples": 15, "seed": 3, "format": "npy"})
    job_id = response.json()["job_id"]
    assert response.headers["location"] == f"/jobs/{job_id}"
    job = wait_finished(client, job_id)
    assert job["progress"] == {"done": 15, "total": 15}
    assert job["created_at"] and job["started_at"] and job["ended_at"]
    assert job["request"] == {"num_samples": 15, "seed": 3, "format": "npy", "leads": 8, "precision": "fp32",
                              "model": "pulse2pulse-ecg", "version": 2, "annotate": False, "where": None}
    assert job["error"] is None and job["execution_provider"] == "CPUExecutionProvider"


def test_stream_sends_first_ecgs_before_the_job_ends_and_matches_the_archive(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 300, "seed": 5, "format": "npy"})
    job_id = created["job_id"]
    lines = []
    status_at_first_line = None
    with client.stream("GET", f"/jobs/{job_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        for line in response.iter_lines():
            if status_at_first_line is None:
                status_at_first_line = client.get(f"/jobs/{job_id}").json()["status"]
            lines.append(json.loads(line))
    assert status_at_first_line in ("queued", "started")
    assert [r["index"] for r in lines] == list(range(300))
    first = lines[0]
    assert first["seed"] == 5 and first["sampling_rate"] == 500.0 and first["unit"] == "uV"
    assert list(first["leads"]) == LEADS_8 and len(first["leads"]["II"]) == 5000

    assert wait_finished(client, job_id)["status"] == "finished"
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
    samples = np.load(io.BytesIO(archive.read("ecgs.npy")))
    streamed = np.stack([np.array(list(r["leads"].values())).T for r in lines])
    np.testing.assert_array_equal(streamed, samples)

    again = [json.loads(line) for line in client.get(f"/jobs/{job_id}/stream").text.splitlines()]
    assert again == lines  # also after the job finished


@pytest.mark.parametrize("fmt", ["json"])
def test_json_archive_is_the_stream(client: httpx.Client, fmt: str) -> None:
    created, archive, _ = download(client, {"num_samples": 4, "seed": 11, "format": fmt})
    streamed = client.get(f"/jobs/{created['job_id']}/stream").content
    assert archive.read("ecgs.ndjson") == streamed


def test_result_of_an_unfinished_job_is_409_with_its_status(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 400, "seed": 1, "format": "npy"})
    response = client.get(f"/jobs/{created['job_id']}/result")
    assert response.status_code == 409
    assert response.json()["status"] in ("queued", "started")
    assert wait_finished(client, created["job_id"])["status"] == "finished"


def test_cancel_queued_and_running_jobs(client: httpx.Client) -> None:
    running = submit(client, {"num_samples": 5000, "seed": 1, "format": "npy"})["job_id"]
    queued = submit(client, {"num_samples": 5, "seed": 1, "format": "npy"})["job_id"]
    wait_generating(client, running)

    response = client.delete(f"/jobs/{queued}")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    response = client.delete(f"/jobs/{running}")
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "canceled" and job["progress"]["done"] < 5000

    assert client.get(f"/jobs/{running}/result").status_code == 409
    assert client.delete(f"/jobs/{running}").status_code == 409

    after = submit(client, {"num_samples": 3, "seed": 2, "format": "npy"})  # the worker goes on
    assert wait_finished(client, after["job_id"])["status"] == "finished"
    assert client.get(f"/jobs/{queued}").json()["status"] == "canceled"


def test_delete_of_a_finished_job_removes_its_files(client: httpx.Client, settings: Settings) -> None:
    created = submit(client, {"num_samples": 1, "format": "npy"})
    wait_finished(client, created["job_id"])
    assert (settings.jobs_dir / created["job_id"]).is_dir()
    response = client.delete(f"/jobs/{created['job_id']}")
    assert response.status_code == 200 and response.json()["status"] == "finished"
    assert not (settings.jobs_dir / created["job_id"]).exists()
    gone = client.get(f"/jobs/{created['job_id']}/result")
    assert gone.status_code == 404 and "no longer stored" in gone.json()["message"]
    assert client.get(f"/jobs/{created['job_id']}").json()["status"] == "finished"  # the recipe stays


def test_jobs_are_stored_as_json_not_pickle(client: httpx.Client, settings: Settings) -> None:
    created = submit(client, {"num_samples": 1, "seed": 8, "format": "npy"})
    raw = Redis.from_url(str(settings.redis_url)).hget(f"rq:job:{created['job_id']}", "data")
    (spec,), kwargs = json.loads(zlib.decompress(raw))[2:4]
    assert json.loads(zlib.decompress(raw))[0] == "workers.tasks.generate" and kwargs == {}
    assert spec["seed"] == 8 and spec["model_id"] == "pulse2pulse-ecg"
    wait_finished(client, created["job_id"])


def test_both_ecg_versions_are_served_and_agree_to_1_uv(client: httpx.Client, settings: Settings) -> None:
    """Version 1 stays for regenerating what was made with it; version 2 (the default) computes the same network."""
    store = open_store(settings)
    made = {}
    for version in (1, 2, None):
        body = {"num_samples": 6, "seed": 11, "format": "npy", **({"version": version} if version else {})}
        created, archive, _ = download(client, body)
        manifest = json.loads(archive.read("manifest.json"))
        served = version or 2
        assert created["model"] == {"id": "pulse2pulse-ecg", "version": served} == {
            k: manifest["model"][k] for k in ("id", "version")}
        assert manifest["model"]["sha256"] == store.get("pulse2pulse-ecg", served).manifest.sha256
        made[version] = np.load(io.BytesIO(archive.read("ecgs.npy"))).astype(np.int32)
    assert np.array_equal(made[2], made[None])
    difference = np.abs(made[1] - made[2])
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.001
