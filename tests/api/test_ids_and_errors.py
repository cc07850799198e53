"""What a client can name and what it is told: a chunk's id is no job, ids that are paths are no jobs, and a failed
job's error names no path of the server's disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deepsynthbody.core.settings import Settings
from tests.conftest import CHUNK_SIZE, submit, wait_finished, wait_generating


def test_a_chunk_id_is_not_a_job_and_cannot_cancel_one(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 3 * CHUNK_SIZE, "seed": 11, "format": "npy"})
    job_id = created["job_id"]
    wait_generating(client, job_id)
    for chunk in (f"{job_id}-chunk-00000", f"{job_id}-chunk-00001"):
        for method, suffix in [("DELETE", ""), ("GET", ""), ("GET", "/result"), ("HEAD", "/result"), ("GET", "/stream")]:
            response = client.request(method, f"/jobs/{chunk}{suffix}")
            assert response.status_code == 404, (method, chunk, suffix, response.text)
    assert client.get(f"/jobs/{job_id}").json()["status"] in ("queued", "started", "finished")
    assert wait_finished(client, job_id)["status"] == "finished"
    assert client.get(f"/jobs/{job_id}/result").status_code == 200


# a bare ".." never reaches the service: clients (httpx, curl, browsers) resolve "/jobs/.." to "/" before sending
@pytest.mark.parametrize("job_id", ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2Fetc%2Fpasswd", "abc%00", "ABCDEF",
                                    "0" * 65, "rq:job:abc"])
def test_an_id_that_is_a_path_or_a_key_is_no_job(client: httpx.Client, job_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/jobs/{job_id}")
        assert response.status_code == 404, (method, job_id, response.text)
        assert response.json()["message"]


def test_a_failed_jobs_error_names_no_server_path(client: httpx.Client, broken_model: str, settings: Settings,
                                                  extra_models: Path) -> None:
    created = submit(client, {"num_samples": 2, "seed": 5, "format": "npy"}, path=broken_model)
    job = wait_finished(client, created["job_id"])
    assert job["status"] == "failed"
    result = client.get(f"/jobs/{created['job_id']}/result").json()
    stream = client.get(f"/jobs/{created['job_id']}/stream").json()
    for text in (job["error"], result["message"], result["error"], stream["error"]):
        assert "model.onnx does not match its manifest" in text, text  # the file, by its name
        for root in (extra_models, settings.data_dir, Path("/tmp"), Path.home()):
            assert str(root) not in text, text
        assert " /" not in text and "'/" not in text, text
