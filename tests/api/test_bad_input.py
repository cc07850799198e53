"""Client mistakes get 4xx with what to fix, never 500; faults in workers and Redis are reported, not fatal."""

from __future__ import annotations

import json

import httpx
import pytest

from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, free_port, run_api, submit, wait_finished, wait_for


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"num_samples": 0}, "num_samples", "greater than or equal to 1"),
        ({"num_samples": 10_001}, "num_samples", "at most 10000 samples per request on this service (its "
                                                 "DSB_MAX_SAMPLES); make a larger dataset as several requests, each "
                                                 "with a seed of its own"),
        ({"num_samples": "ten"}, "num_samples", "valid integer"),
        ({"num_samples": 1.5}, "num_samples", "valid integer"),
        ({"num_samples": True}, "num_samples", "valid integer"),
        ({"num_samples": 1, "seed": -1}, "seed", "greater than or equal to 0"),
        ({"num_samples": 1, "seed": 2**63}, "seed", "less than or equal to"),
        ({"num_samples": 1, "format": "mp3"}, "format", "'wfdb', 'csv', 'asc', 'npy', 'json', 'edf', 'dicom', 'pdf' or 'png'"),
        ({"num_samples": 1, "leads": 10}, "leads", "8 or 12"),
        ({"num_samples": 1, "leads": "12"}, "leads", "8 or 12"),
        ({"num_samples": 1, "colour": "red"}, "colour", "unknown field; the fields here are num_samples, seed, format, "
                                                       "model, version, precision, annotate, where, leads"),
        # a model's parameters are top-level fields, not under `params`
        ({"num_samples": 1, "params": {"leads": 12}}, "params", "unknown field; the fields here are num_samples, seed"),
        ({"num_samples": 1, "where": {"heart_rate": {"minimum": 50}}}, "minimum",
         "unknown field (did you mean min?); the fields here are min, max"),
        ({"num_samples": 1, "Leads": 12}, "Leads", "unknown field (did you mean leads?); the fields here are"),
        ({"num_samples": 1, "sed": 12}, "sed", "unknown field (did you mean seed?); the fields here are"),
        ({"num_samples": 1, "version": "latest"}, "version", "valid integer"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(client: httpx.Client, body: dict, field: str, hint: str) -> None:
    response = client.post(ECG, json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert any(error["loc"][-1] == field for error in payload["detail"]), payload
    assert field in payload["message"] and hint in payload["message"], payload["message"]


def test_several_unknown_fields_list_the_fields_taken_once(client: httpx.Client) -> None:
    response = client.post(ECG, json={"num_samples": 1, "colour": "red", "size": 3, "where": {"heart_rate": {
        "minimum": 50, "maximum": 60}}})
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.count("the fields here are num_samples, seed") == 1, message
    assert message.count("the fields here are min, max") == 1, message
    said = {issue["loc"][-1]: issue["msg"] for issue in response.json()["detail"]}
    assert said["colour"].startswith("unknown field; the fields here are") and said["size"] == "unknown field", said
    assert "body.where.heart_rate.maximum: unknown field (did you mean max?)" in message, message


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
    result = client.get(f"/jobs/{created['job_id']}/result")
    assert result.status_code == 409
    assert "failed" in result.json()["message"] and "does not match its manifest" in result.json()["message"]
    assert "once it is finished" not in result.json()["message"]
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
                assert "Redis" in response.json()["detail"] and "Redis" in response.json()["message"]
            ready = app.get("/readyz")
            assert ready.status_code == 503 and "Redis is unreachable" in ready.json()["problems"]
            assert "Redis is unreachable" in ready.json()["message"]
            assert app.get("/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "raw",
    [b'{"num_samples": NaN}', b'{"num_samples": 1, "seed": Infinity}', b'{"num_samples": 1, "seed": -Infinity}',
     b'{"num_samples": 1, "colour": NaN}', b'{"num_samples": 1e400}'],
)
def test_nan_and_infinity_are_422_not_500(client: httpx.Client, raw: bytes) -> None:
    response = client.post(ECG, content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("fix the request")


@pytest.mark.parametrize(
    "raw", [b'{"num_samples": "\xff\xfe"}', b"\xff\xfe{}", b'{"num_samples": 1, "colour": "caf\xe9"}', b'{"\xe9": 1}'],
)
def test_a_body_that_is_not_utf8_is_422_not_500(client: httpx.Client, raw: bytes) -> None:
    response = client.post(ECG, content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("fix the request: body: Invalid JSON")


BAD_JOB_IDS = ["a.b", "%2e%2e", "a%20b", "%00", "%C3%A9", "ABC", "abc%0A", "g", "0" * 65, "%E2%80%AE"]


@pytest.mark.parametrize("job_id", BAD_JOB_IDS)
@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("DELETE", ""), ("GET", "/result"), ("HEAD", "/result"),
                                                ("GET", "/stream")])
def test_job_ids_outside_the_id_alphabet_are_404_saying_what_ids_look_like(
        client: httpx.Client, job_id: str, method: str, suffix: str) -> None:
    response = client.request(method, f"/jobs/{job_id}{suffix}")
    assert response.status_code == 404, response.text
    if method != "HEAD":
        assert "no job" in response.json()["detail"]
        assert "32 lowercase hexadecimal characters" in response.json()["message"]


def test_an_error_quotes_at_most_a_few_hundred_characters_of_the_input(client: httpx.Client) -> None:
    huge = "x" * 60_000  # under DSB_MAX_BODY_BYTES (64 KiB): larger bodies are refused unread (tests/api/test_limits.py)
    for raw in [
        json.dumps({"num_samples": 1, "colour": huge}).encode(),  # one unknown field
        json.dumps({"num_samples": 1, huge: 1}).encode(),  # an unknown field with a huge name
        json.dumps({"num_samples": 1, "format": huge}).encode(),
        json.dumps([huge]).encode(),  # not an object
        b'{"num_samples": "' + huge.encode(),  # malformed
        json.dumps({"num_samples": 1, **{f"field{i}": i for i in range(2_000)}}).encode(),  # many problems
    ]:
        response = client.post(ECG, content=raw, headers=JSON)
        assert response.status_code == 422, response.text[:500]
        assert len(response.content) < 10_000, response.text[:500]
        payload = response.json()
        assert payload["message"].startswith("fix the request")
    assert "and 1980 more problems" in payload["message"] and len(payload["detail"]) == 20
    short = client.post(ECG, json={"num_samples": 1, "colour": "red"}).json()
    assert short["detail"][0]["input"] == "red"  # short values are quoted whole


def test_every_error_carries_a_message(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 2000, "format": "npy"})
    assert client.delete(f"/jobs/{created['job_id']}").status_code in (200, 202)
    wait_finished(client, created["job_id"])
    answers = {
        404: [client.get("/jobs/0123456789abcdef"), client.get("/no/such/route"), client.get("/models/cardiac/ecg"),
              client.post("/generate/cardiac/ecg", json={"num_samples": 1})],
        405: [client.put("/models"), client.get(ECG)],
        409: [client.delete(f"/jobs/{created['job_id']}")],
        415: [client.post(ECG, content=b"{}", headers={"content-type": "text/plain"})],
        422: [client.post(ECG, json={"num_samples": 0})],
    }
    for status, responses in answers.items():
        for response in responses:
            assert response.status_code == status, (response.request.url, response.text)
            body = response.json()
            assert isinstance(body["message"], str) and len(body["message"]) > 20, body
            assert "detail" in body
    assert answers[405][0].headers["allow"] == "GET" and "use GET" in answers[405][0].json()["message"]
    assert "GET /models" in answers[404][3].json()["message"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
     "text/json"],
)
def test_a_body_that_is_not_json_is_415(client: httpx.Client, content_type: str) -> None:
    response = client.post(ECG, content=b'{"num_samples": 1, "format": "npy"}', headers={"content-type": content_type})
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "application/json; charset=utf-8"}, {"content-type": "Application/JSON"},
     {"content-type": "application/vnd.api+json"}, {}],
)
def test_json_content_types_and_none_are_accepted(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post(ECG, content=b'{"num_samples": 1, "format": "npy"}', headers=headers)
    assert response.status_code == 202, response.text


def test_the_result_of_a_canceled_job_says_it_was_canceled(client: httpx.Client) -> None:
    job_id = submit(client, {"num_samples": 4000, "seed": 1, "format": "npy"})["job_id"]
    assert client.delete(f"/jobs/{job_id}").status_code in (200, 202)
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "canceled", 30, "the job to be canceled")
    for response in (client.get(f"/jobs/{job_id}/result"), client.head(f"/jobs/{job_id}/result")):
        assert response.status_code == 409
    message = client.get(f"/jobs/{job_id}/result").json()["message"]
    assert "was canceled" in message and "never" in message and "once it is finished" not in message, message


def test_head_result_answers_like_get_without_the_body(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 3, "seed": 4, "format": "npy"})
    early = client.head(f"/jobs/{created['job_id']}/result")
    assert early.status_code in (409, 200) and early.content == b""
    wait_finished(client, created["job_id"])
    head = client.head(f"/jobs/{created['job_id']}/result")
    get = client.get(f"/jobs/{created['job_id']}/result")
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and int(head.headers["content-length"]) == len(get.content) > 0
    for header in ("content-type", "content-disposition", "content-length"):
        assert head.headers[header] == get.headers[header]
    assert client.head("/jobs/0123456789abcdef/result").status_code == 404


def test_a_trailing_slash_is_served_like_none_without_a_redirect(client: httpx.Client) -> None:
    created = client.post(ECG + "/", json={"num_samples": 2, "seed": 9, "format": "npy"})
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    assert created.json()["seed"] == 9  # the body arrived
    wait_finished(client, job_id)
    for path in ["/models", "/models/cardiovascular/ecg", f"/jobs/{job_id}", f"/jobs/{job_id}/result", "/healthz"]:
        plain, slashed = client.get(path), client.get(path + "/")
        assert slashed.status_code == plain.status_code == 200, (path, slashed.status_code, slashed.text[:200])
        if path.startswith("/jobs/"):
            continue
        assert slashed.content == plain.content, path
    missing = client.get("/models//")
    assert missing.status_code == 404 and missing.json()["message"]
