"""Limits, each with its status, header and message: request bodies (413, 408), a key's active jobs and samples per
UTC day (429, counted in Redis and shared by API processes), requests per second (429)."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from deepsynthbody.core.settings import Settings
from tests.api.test_openapi import Document
from tests.conftest import ECG, wait_finished
from tests.helpers.auth_api import client, new_key, start_api, stop

BODY = {"num_samples": 1, "seed": 1, "format": "npy"}


@pytest.fixture(scope="module")
def quiet(settings: Settings) -> Settings:
    """A queue no worker serves: accepted jobs stay queued, so they stay active."""
    return settings.model_copy(update={"queue": f"limits-{uuid.uuid4().hex[:8]}"})


@pytest.fixture(scope="module")
def two_apis(quiet: Settings, ecg_model_dir: Path) -> Iterator[tuple[str, str]]:
    """Two API processes on one Redis, as two hosts behind a load balancer would be."""
    env = {"DSB_AUTH": "required", "DSB_BODY_TIMEOUT": "1", "DSB_DEFAULT_MAX_ACTIVE_JOBS": "1"}
    first, first_url = start_api(quiet, **env)
    second, second_url = start_api(quiet, **env)
    yield first_url, second_url
    stop(first)
    stop(second)


@pytest.fixture(scope="module")
def doc(two_apis: tuple[str, str]) -> Document:
    return Document(httpx.get(f"{two_apis[0]}/openapi.json").json())


def _is_limit(response: httpx.Response, limit: str, value: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["limit"] == limit and body["value"] == value
    assert str(value) in body["message"] and body["message"].startswith(("limit reached", "rate limit"))
    assert int(response.headers["retry-after"]) >= 1


def test_a_body_over_the_limit_is_413_before_it_is_read(two_apis: tuple[str, str], quiet: Settings,
                                                        doc: Document) -> None:
    with client(two_apis[0], new_key(quiet, "big-bodies")) as http:
        declared = http.post(ECG, content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"})
        chunked = http.post(ECG, content=iter([b'{"num_samples": 1, "pad": "'] + [b"x" * 1000] * 70 + [b'"}']),
                            headers={"content-type": "application/json"})  # no Content-Length: counted as it comes
        for response in (declared, chunked):
            assert response.status_code == 413, response.text
            assert "larger than 65536 bytes (DSB_MAX_BODY_BYTES)" in response.json()["message"]
            doc.check(ECG, response)
        assert "content-length" not in chunked.request.headers
        assert http.post(ECG, json={**BODY, "pad": "x" * 60_000}).status_code == 422  # under the limit: parsed
    unauthenticated = httpx.post(f"{two_apis[0]}{ECG}", content=b" " * 70_000)
    assert unauthenticated.status_code == 413  # refused before anything else


def _raw(url: str, request: bytes, wait: float) -> tuple[bytes, float]:
    """Sends `request` and nothing more; returns what the server answered (until it closed) and when."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(request)
        start = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer, time.monotonic() - start


def test_a_stalled_body_is_408_and_the_connection_closed(two_apis: tuple[str, str], quiet: Settings) -> None:
    key = new_key(quiet, "slow-bodies")
    head = (f"POST {ECG} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n").encode()
    for request in (head + b"Content-Length: 100\r\n\r\n{\"num_samples\"",  # promised 100 bytes, sent 14
                    head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"num\r\n"):  # a chunked body with no end
        answer, seconds = _raw(two_apis[0], request, wait=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"sent nothing for 1 s (DSB_BODY_TIMEOUT)" in answer
        assert 0.9 < seconds < 5  # and the server closed the connection (recv returned b"")


def test_active_jobs_per_key_are_shared_by_api_processes(two_apis: tuple[str, str], quiet: Settings,
                                                         doc: Document) -> None:
    first_url, second_url = two_apis
    key = new_key(quiet, "two-at-once", max_active_jobs=2)
    with client(first_url, key) as first, client(second_url, key) as second:
        accepted = [first.post(ECG, json=BODY), second.post(ECG, json=BODY)]
        assert [r.status_code for r in accepted] == [202, 202]
        for http in (first, second):
            refused = http.post(ECG, json=BODY)
            _is_limit(refused, "max_active_jobs", 2)
            assert "at most 2 active (queued or running) jobs" in refused.json()["message"]
            doc.check(ECG, refused)
        assert first.delete(f"/jobs/{accepted[0].json()['job_id']}").status_code == 200  # a cancel gives it back
        assert second.post(ECG, json=BODY).status_code == 202
        _is_limit(first.post(ECG, json=BODY), "max_active_jobs", 2)
    with client(first_url, new_key(quiet, "default-limits")) as http:  # DSB_DEFAULT_MAX_ACTIVE_JOBS=1
        assert http.post(ECG, json=BODY).status_code == 202
        _is_limit(http.post(ECG, json=BODY), "max_active_jobs", 1)


def test_samples_per_utc_day_are_shared_by_api_processes(two_apis: tuple[str, str], quiet: Settings) -> None:
    key = new_key(quiet, "ten-a-day", samples_per_day=10, max_active_jobs=100)
    with client(two_apis[0], key) as first, client(two_apis[1], key) as second:
        assert first.post(ECG, json={**BODY, "num_samples": 6}).status_code == 202
        refused = second.post(ECG, json={**BODY, "num_samples": 5})
        _is_limit(refused, "samples_per_day", 10)
        assert "6 used today, this request asks for 5; ask for at most 4" in refused.json()["message"]
        now = datetime.now(UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert abs(int(refused.headers["retry-after"]) - (midnight - now).total_seconds()) < 5
        assert second.post(ECG, json={**BODY, "num_samples": 4}).status_code == 202
        _is_limit(first.post(ECG, json=BODY), "samples_per_day", 10)


def test_concurrent_requests_on_two_processes_never_exceed_a_limit(two_apis: tuple[str, str], quiet: Settings) -> None:
    key = new_key(quiet, "burst", max_active_jobs=5, samples_per_day=1000)
    clients = [client(url, key) for url in two_apis]
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda i: clients[i % 2].post(ECG, json=BODY).status_code, range(24)))
    finally:
        for http in clients:
            http.close()
    assert sorted(statuses) == [202] * 5 + [429] * 19


def test_a_finished_or_failed_job_gives_its_slot_back(settings: Settings, worker: subprocess.Popen[bytes],
                                                      broken_model: str) -> None:
    process, url = start_api(settings, DSB_AUTH="required")
    try:
        with client(url, new_key(settings, "one-at-a-time", max_active_jobs=1)) as http:
            for path in (ECG, broken_model, ECG):
                response = http.post(path, json=BODY)
                assert response.status_code == 202, response.text
                wait_finished(http, response.json()["job_id"])
            big = http.post(ECG, json={**BODY, "num_samples": 250})  # chunked: its archive job holds the slot
            assert big.status_code == 202
            _is_limit(http.post(ECG, json=BODY), "max_active_jobs", 1)
            assert wait_finished(http, big.json()["job_id"])["status"] == "finished"
            assert http.post(ECG, json=BODY).status_code == 202
    finally:
        stop(process)


def test_requests_per_second_per_key(quiet: Settings, ecg_model_dir: Path) -> None:
    process, url = start_api(quiet, DSB_AUTH="required", DSB_RATE_LIMIT_PER_SECOND="5")
    try:
        doc = Document(httpx.get(f"{url}/openapi.json").json())
        with client(url, new_key(quiet, "hasty")) as hasty, client(url, new_key(quiet, "patient")) as patient:
            answers = []
            while len(answers) < 60 and 429 not in [r.status_code for r in answers]:  # 60 need 12 s to pass
                answers.append(hasty.get("/models"))
            limited = [r for r in answers if r.status_code == 429]
            assert limited and answers[0].status_code == 200 and len(answers) >= 6
            _is_limit(limited[0], "requests_per_second", 5)
            doc.check("/models", limited[0])
            assert patient.get("/models").status_code == 200  # another key is not slowed down
            time.sleep(1.1)
            assert hasty.get("/models").status_code == 200
    finally:
        stop(process)
