"""Client mistakes get 4xx with what to fix, never 500; faults in workers and Redis are reported, not fatal."""

from __future__ import annotations

import httpx
import pytest
from deepsynthbody.settings import Settings
from tests.conftest import ECG, free_port, run_api, submit, wait_finished


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"num_samples": 0}, "num_samples", "greater than or equal to 1"),
        ({"num_samples": 10_001}, "num_samples", "less than or equal to 10000"),
        ({"num_samples": "ten"}, "num_samples", "valid integer"),
        ({"num_samples": 1.5}, "num_samples", "valid integer"),
        ({"num_samples": True}, "num_samples", "valid integer"),
        ({"num_samples": 1, "seed": -1}, "seed", "greater than or equal to 0"),
        ({"num_samples": 1, "seed": 2**63}, "seed", "less than or equal to"),
        ({"num_samples": 1, "format": "mp3"}, "format", "'wfdb', 'csv', 'asc', 'npy' or 'json'"),
        ({"num_samples": 1, "leads": 10}, "leads", "8 or 12"),
        ({"num_samples": 1, "leads": "12"}, "leads", "8 or 12"),
        ({"num_samples": 1, "colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"num_samples": 1, "version": "latest"}, "version", "valid integer"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(client: httpx.Client, body: dict, field: str, hint: str) -> None:
    response = client.post(ECG, json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert any(error["loc"][-1] == field for error in payload["detail"]), payload
    assert field in payload["message"] and hint in payload["message"], payload["message"]


@pytest.mark.parametrize("raw", [b'{"num_samples": 1', b"not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_json_is_422(client: httpx.Client, raw: bytes) -> None:
    response = client.post(ECG, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("fix the request")


def test_unknown_body_system_is_404_listing_what_exists(client: httpx.Client) -> None:
    response = client.post("/generate/cardiac/ecg", json={"num_samples": 1})
    assert response.status_code == 404
    payload = response.json()
    assert "cardiac" in payload["detail"]
    assert "ecg" in payload["available"]["cardiovascular"] and "skeletal" in payload["available"]


def test_unknown_subcategory_is_404_listing_what_exists(client: httpx.Client) -> None:
    response = client.post("/generate/cardiovascular/eeg", json={"num_samples": 1})
    assert response.status_code == 404
    assert response.json()["available"]["cardiovascular"][:1] == ["ecg"]


def test_unknown_model_version_is_404_listing_versions(client: httpx.Client) -> None:
    response = client.post(ECG, json={"num_samples": 1, "version": 99})
    assert response.status_code == 404
    assert response.json()["versions"] == [1, 2]


@pytest.mark.parametrize("suffix", ["", "/result", "/stream"])
def test_unknown_job_is_404(client: httpx.Client, suffix: str) -> None:
    response = client.get(f"/jobs/0123456789abcdef{suffix}")
    assert response.status_code == 404
    assert "no job" in response.json()["detail"]
    assert client.delete("/jobs/0123456789abcdef").status_code == 404


def test_a_job_whose_worker_raises_fails_with_the_reason(client: httpx.Client, broken_model: str) -> None:
    created = submit(client, {"num_samples": 3, "seed": 1, "format": "npy"}, path=broken_model)
    job = wait_finished(client, created["job_id"])
    assert job["status"] == "failed"
    assert "does not match its manifest" in job["error"]
    assert client.get(f"/jobs/{created['job_id']}/result").status_code == 409
    assert client.get(f"/jobs/{created['job_id']}/stream").status_code == 409
    assert client.get("/healthz").status_code == 200
    after = submit(client, {"num_samples": 2, "format": "npy"})  # the service goes on
    assert wait_finished(client, after["job_id"])["status"] == "finished"


def test_redis_unreachable_is_503_with_retry_after(settings: Settings, ecg_model_dir: object) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    process, url = run_api(down)
    try:
        with httpx.Client(base_url=url) as app:
            for method, path in [("POST", ECG), ("GET", "/jobs/abc"), ("DELETE", "/jobs/abc"), ("GET", "/jobs/abc/result")]:
                response = app.request(method, path, json={"num_samples": 1})
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "5"
                assert "Redis" in response.json()["detail"]
            ready = app.get("/readyz")
            assert ready.status_code == 503 and "Redis is unreachable" in ready.json()["problems"]
            assert app.get("/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
