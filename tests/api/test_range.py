"""`/jobs/{id}/result` honours HTTP range requests: an interrupted download resumes where it stopped."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.api.test_openapi import Document
from tests.conftest import submit, wait_finished

RESULT = "/jobs/{job_id}/result"


@pytest.fixture(scope="module")
def finished_job(client: httpx.Client) -> tuple[str, bytes]:
    job_id = submit(client, {"num_samples": 5, "seed": 11, "format": "wfdb"})["job_id"]
    assert wait_finished(client, job_id)["status"] == "finished"
    whole = client.get(f"/jobs/{job_id}/result")
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    return job_id, whole.content


def test_a_download_resumed_from_any_byte_is_the_same_archive(client: httpx.Client, finished_job: tuple[str, bytes]) -> None:
    job_id, whole = finished_job
    size = len(whole)
    etag = client.head(f"/jobs/{job_id}/result").headers["etag"]
    for cut in (1, size // 3, size - 1):
        rest = client.get(f"/jobs/{job_id}/result", headers={"Range": f"bytes={cut}-", "If-Range": etag})
        assert rest.status_code == 206, rest.text
        assert rest.headers["content-range"] == f"bytes {cut}-{size - 1}/{size}"
        assert int(rest.headers["content-length"]) == size - cut
        assert hashlib.sha256(whole[:cut] + rest.content).digest() == hashlib.sha256(whole).digest()
    middle = client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=10-19"})
    assert (middle.status_code, middle.content) == (206, whole[10:20])
    tail = client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=-7"})
    assert (tail.status_code, tail.content) == (206, whole[-7:])
    head = client.head(f"/jobs/{job_id}/result", headers={"Range": "bytes=100-"})
    assert head.status_code == 206 and head.content == b"" and head.headers["content-range"] == f"bytes 100-{size - 1}/{size}"


def test_an_if_range_that_no_longer_matches_gets_the_whole_archive(client: httpx.Client,
                                                                   finished_job: tuple[str, bytes]) -> None:
    job_id, whole = finished_job
    answer = client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=100-", "If-Range": '"another-archive"'})
    assert answer.status_code == 200 and answer.content == whole


@pytest.mark.parametrize("bad", ["bytes=999999999-", "bytes=5-2", "lines=0-1", "bytes=abc"])
def test_a_range_that_cannot_be_served_is_416_with_the_size(client: httpx.Client, finished_job: tuple[str, bytes],
                                                            bad: str) -> None:
    job_id, whole = finished_job
    answer = client.get(f"/jobs/{job_id}/result", headers={"Range": bad})
    assert answer.status_code == 416, answer.text
    assert answer.headers["content-range"] == f"bytes */{len(whole)}"
    assert answer.json()["size"] == len(whole) and "Range" in answer.json()["message"]
    Document(client.get("/openapi.json").json()).check(RESULT, answer)


def test_the_document_declares_206_and_416(client: httpx.Client, finished_job: tuple[str, bytes]) -> None:
    job_id, _ = finished_job
    doc = Document(client.get("/openapi.json").json())
    for method in ("get", "head"):
        assert {"200", "206", "416"} <= set(doc.spec["paths"][RESULT][method]["responses"])
    doc.check(RESULT, client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=3-"}))
    doc.check(RESULT, client.head(f"/jobs/{job_id}/result", headers={"Range": "bytes=3-"}))
    doc.check(RESULT, client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=0-1,5-9"}))
