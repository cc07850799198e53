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
    assert bodies, "the generate route documents its body"
    for path, operation in bodies:
        content = operation["requestBody"]["content"]["application/json"]
        assert content.get("examples") or content["schema"].get("examples"), path
    generate = spec["paths"]["/generate/{category}/{subcategory}"]["post"]
    examples = generate["requestBody"]["content"]["application/json"]["examples"]
    assert any(e["value"]["format"] == "wfdb" for e in examples.values())
    assert [(p["name"], p["in"], p["required"]) for p in generate["parameters"]] == [
        ("category", "path", True), ("subcategory", "path", True)]
    assert generate["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobCreated")
    assert client.get("/docs").status_code == 200
