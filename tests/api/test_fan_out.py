"""A request above the chunk size fans out over chunk jobs; any number of workers give the same archive."""

from __future__ import annotations

import io
import json
import time
import zipfile

import httpx
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from deepsynthbody.core.jobs import chunk_job_id
from deepsynthbody.core.settings import Settings
from tests.conftest import CHUNK_SIZE, start_worker, submit, wait_finished, wait_generating

REQUEST = {"num_samples": 5 * CHUNK_SIZE - 13, "seed": 77, "format": "wfdb", "leads": 12}


def _archive(client: httpx.Client, job_id: str) -> dict[str, bytes]:
    assert wait_finished(client, job_id, timeout=300)["status"] == "finished"
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
    return {name: archive.read(name) for name in archive.namelist()}


def _workers_of(settings: Settings, job_id: str, chunks: int) -> set[str]:
    redis = Redis.from_url(str(settings.redis_url))
    ids = [chunk_job_id(job_id, i) for i in range(chunks)]
    return {job.worker_name for job in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer) if job}


def _with_a_second_worker(client: httpx.Client, settings: Settings, request: dict,
                          ) -> tuple[str, list[int], dict, dict[str, bytes]]:
    """The request run with a second worker beside the session's: its id, the progress seen while it ran, its
    final status and its archive's members."""
    second = start_worker(settings, batch_size=5)
    try:
        job_id = submit(client, request)["job_id"]
        progress = []
        while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("finished", "failed"):
            progress.append(job["progress"]["done"])
            time.sleep(0.05)
        return job_id, progress, job, _archive(client, job_id)
    finally:
        second.terminate()
        second.wait(timeout=30)


def test_two_workers_make_the_archive_one_worker_makes(client: httpx.Client, settings: Settings) -> None:
    one = submit(client, REQUEST)["job_id"]
    single = _archive(client, one)
    assert len(_workers_of(settings, one, 5)) == 1

    two, progress, job, parallel = _with_a_second_worker(client, settings, REQUEST)
    assert len(_workers_of(settings, two, 5)) == 2

    assert progress == sorted(progress) and job["progress"] == {"done": REQUEST["num_samples"], "total": REQUEST["num_samples"]}
    data = {name for name in single if name != "manifest.json"}
    assert data == {name for name in parallel if name != "manifest.json"} and len(data) == 2 * REQUEST["num_samples"]
    assert all(single[name] == parallel[name] for name in data)
    manifests = json.loads(single["manifest.json"]), json.loads(parallel["manifest.json"])
    assert manifests[0]["files"] == manifests[1]["files"] and manifests[1]["chunks"] == 5


def test_cancel_cancels_every_chunk(client: httpx.Client, settings: Settings) -> None:
    job_id = submit(client, {"num_samples": 40 * CHUNK_SIZE, "seed": 1, "format": "npy"})["job_id"]
    wait_generating(client, job_id)
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    redis = Redis.from_url(str(settings.redis_url))
    chunks = Job.fetch_many([chunk_job_id(job_id, i) for i in range(40)], connection=redis, serializer=JSONSerializer)
    assert {job.get_status() for job in chunks} <= {"canceled", "stopped", "finished"}
    assert sum(job.get_status() == "finished" for job in chunks) < 40
    assert client.get(f"/jobs/{job_id}/result").status_code == 409


FILTERED = {"num_samples": 25, "seed": 78, "format": "wfdb", "where": {"heart_rate": {"min": 60, "max": 72}}}


def test_a_filtered_request_is_cut_in_candidate_space_and_two_workers_make_what_one_makes(
        client: httpx.Client, settings: Settings) -> None:
    """Its candidate budget is many chunks: the chunk jobs search them side by side, and any number of workers
    (one, then two) give the same archive: the first 25 matching candidates, in candidate order."""
    one = submit(client, FILTERED)["job_id"]
    single = _archive(client, one)
    _, progress, job, parallel = _with_a_second_worker(client, settings, FILTERED)
    assert progress == sorted(progress) and all(done <= 25 for done in progress) and job["progress"]["done"] == 25
    data = {name for name in single if name != "manifest.json"}
    assert data == {name for name in parallel if name != "manifest.json"} and "labels.csv" in data
    assert all(single[name] == parallel[name] for name in data)
    manifests = json.loads(single["manifest.json"]), json.loads(parallel["manifest.json"])
    assert manifests[0]["chunks"] > 2 and manifests[0]["selection"] == manifests[1]["selection"]
    assert manifests[0]["selection"]["accepted"] == 25
