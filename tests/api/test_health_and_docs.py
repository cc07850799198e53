"""Probes and the OpenAPI document."""

from __future__ import annotations

import httpx


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] and body["checks"]["redis"] == "ok" and body["checks"]["workers"] >= 1
    assert "pulse2pulse-ecg:1" in body["checks"]["models"]


def test_openapi_documents_every_request_body_with_an_example(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    bodies = [(path, op) for path, item in spec["paths"].items() for op in item.values() if "requestBody" in op]
    assert bodies, "the generate routes document their bodies"
    for path, operation in bodies:
        if "application/json" not in operation["requestBody"]["content"]:  # an upload: the archive's media types
            assert path == "/models" and set(operation["requestBody"]["content"]) == {"application/zip",
                                                                                     "application/gzip"}, path
            continue
        content = operation["requestBody"]["content"]["application/json"]
        assert content.get("examples") or content["schema"].get("examples"), path
    generate = spec["paths"]["/generate/cardiovascular/ecg"]["post"]
    examples = generate["requestBody"]["content"]["application/json"]["examples"]
    assert any(e["value"]["format"] == "wfdb" for e in examples.values())
    assert "/generate/{category}/{subcategory}" not in spec["paths"]  # one path per installed subcategory instead
    assert generate["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobCreated")
    assert client.get("/docs").status_code == 200


def test_readyz_and_jobs_declare_every_status_they_answer(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    keyed = {"401", "429"}  # every route but health and docs: no valid key, or over its requests per second
    assert set(paths["/jobs/{job_id}"]["get"]["responses"]) == {"200", "404", "422", "503"} | keyed  # 422: ?wait=
    assert set(paths["/jobs/{job_id}"]["delete"]["responses"]) == {"200", "202", "404", "409", "503"} | keyed
    assert set(paths["/jobs/{job_id}/result"]["get"]["responses"]) == {"200", "206", "404", "409", "416", "503"} | keyed
    assert set(paths["/jobs/{job_id}/result"]["head"]["responses"]) == {"200", "206", "404", "409", "416", "503"} | keyed
    assert set(paths["/jobs/{job_id}/stream"]["get"]["responses"]) == {"200", "404", "409", "503"} | keyed
    assert set(paths["/models/{category}/{subcategory}"]["get"]["responses"]) == {"200", "404"} | keyed

