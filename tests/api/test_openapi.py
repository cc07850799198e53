"""The OpenAPI document describes exactly what the service accepts and answers.

It is valid OpenAPI; every request body the service takes validates against the schema it documents and every
body it refuses does not; every real response's status is declared for its route, and its body validates against
the schema declared for that status (OpenAPI 3.1 schemas are JSON Schema 2020-12; `$ref`s resolve in the document).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from deepsynthbody.core.settings import Settings
from model_store.store import ModelStore
from tests.conftest import ECG, free_port, run_api, submit, wait_finished, wait_for
from tests.helpers.tiny_model import make_model

GI_TRACT = "/generate/digestive/gi-tract"
DOC_URI = "urn:deepsynthbody:openapi"


class Document:
    """The served OpenAPI document, to validate instances against the schemas it declares."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(spec))

    def validator(self, *pointer: str | int) -> Draft202012Validator:
        fragment = "".join("/" + quote(str(p).replace("~", "~0").replace("/", "~1"), safe="") for p in pointer)
        return Draft202012Validator({"$ref": f"{DOC_URI}#{fragment}"}, registry=self.registry,
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)

    def request_errors(self, path: str, body: object) -> list[str]:
        validator = self.validator("paths", path, "post", "requestBody", "content", "application/json", "schema")
        return [error.message for error in validator.iter_errors(body)]

    def check(self, template: str, response: httpx.Response) -> None:
        """The response's status is declared for its route, and its body matches the declared schema."""
        method = response.request.method.lower()
        operation = self.spec["paths"][template][method]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method.upper()} {template} answered {status}: {response.text[:300]}"
        declared = operation["responses"][status]
        content = declared.get("content")
        if method == "head":
            assert content is None and response.content == b""
            return
        assert content, f"{method.upper()} {template} {status} declares no body"
        media = response.headers["content-type"].split(";")[0]
        assert media in content, f"{method.upper()} {template} {status}: {media} is not one of {list(content)}"
        if media == "application/json":
            pointer = ("paths", template, method, "responses", status, "content", media, "schema")
            errors = [e.message for e in self.validator(*pointer).iter_errors(response.json())]
            assert not errors, (method, template, status, errors, response.text[:500])
        for header in declared.get("headers", {}):
            assert header.lower() in response.headers, (method, template, status, header)


@pytest.fixture
def doc(client: httpx.Client) -> Document:
    return Document(client.get("/openapi.json").json())


def test_the_document_is_valid_openapi_without_a_oneof(doc: Document) -> None:
    validate(doc.spec)
    assert doc.spec["openapi"].startswith("3.1")
    assert '"oneOf"' not in json.dumps(doc.spec)


def test_every_example_in_the_document_validates_against_its_schema(doc: Document) -> None:
    for name, schema in doc.spec["components"]["schemas"].items():
        for example in schema.get("examples", []):
            errors = [e.message for e in doc.validator("components", "schemas", name).iter_errors(example)]
            assert not errors, (name, example, errors)
    generate = [path for path in doc.spec["paths"] if path.startswith("/generate/")]
    for path in generate:
        for name, example in doc.spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"].items():
            assert not doc.request_errors(path, example["value"]), (path, name)


def test_one_generate_path_per_installed_subcategory(doc: Document, client: httpx.Client) -> None:
    catalog = client.get("/models").json()["body_systems"]
    installed = {f"/generate/{s['name']}/{sub['name']}" for s in catalog for sub in s["subcategories"]}
    documented = {path for path in doc.spec["paths"] if path.startswith("/generate/")}
    assert documented == installed and {ECG, GI_TRACT} <= documented
    ecg = doc.spec["paths"][ECG]["post"]
    assert set(ecg["responses"]) == {"202", "401", "404", "408", "413", "415", "422", "429", "503", "507"}
    assert "parameters" not in ecg
    assert len({op["operationId"] for item in doc.spec["paths"].values() for op in item.values()}) == sum(
        len(item) for item in doc.spec["paths"].values())


ACCEPTED = [  # bodies the service takes: each must match the documented schema
    (ECG, {"num_samples": 100, "seed": 42, "format": "npy", "leads": 12}),  # README
    (ECG, {"num_samples": 100, "seed": 42, "format": "wfdb"}),  # README
    (ECG, {"model": "pulse2pulse-ecg", "version": 2, "seed": 42, "num_samples": 100, "format": "wfdb"}),  # README
    (GI_TRACT, {"num_samples": 50, "seed": 1, "format": "png"}),  # README
    (ECG, {}),
    (ECG, {"num_samples": 1, "version": 1}),
    (ECG, {"num_samples": 1, "version": 1, "precision": "fp16", "leads": 8}),
    (ECG, {"num_samples": 1, "version": None, "model": None, "seed": None}),
    (ECG, {"num_samples": 2.0, "seed": 7.0}),  # JSON (and JSON Schema) integers
    (ECG, {"num_samples": 1, "version": 1.0}),
    (GI_TRACT, {"num_samples": 1, "start_scale": 6, "format": "npy"}),
]

REFUSED = [  # bodies the service refuses (404 or 422): each must fail the documented schema
    (ECG, {"num_samples": 0}),
    (ECG, {"num_samples": 10_001}),
    (ECG, {"num_samples": "ten"}),
    (ECG, {"num_samples": 1.5}),
    (ECG, {"num_samples": True}),
    (ECG, {"num_samples": 1, "seed": -1}),
    (ECG, {"num_samples": 1, "seed": 2**63}),
    (ECG, {"num_samples": 1, "format": "mp3"}),
    (ECG, {"num_samples": 1, "format": "tiff"}),  # a format no ECG model offers
    (ECG, {"num_samples": 1, "leads": 10}),
    (ECG, {"num_samples": 1, "leads": "12"}),
    (ECG, {"num_samples": 1, "colour": "red"}),
    (ECG, {"num_samples": 1, "version": "latest"}),
    (ECG, {"num_samples": 1, "version": 99}),
    (ECG, {"num_samples": 1, "version": 0}),
    (ECG, {"num_samples": 1, "model": "singan-seg-polyp"}),
    (ECG, {"num_samples": 1, "precision": "int8"}),
    (ECG, [1, 2]),
    (ECG, "text"),
    (ECG, None),
    (GI_TRACT, {"num_samples": 1, "start_scale": 7}),
    (GI_TRACT, {"num_samples": 1, "format": "wfdb"}),
    (GI_TRACT, {"num_samples": 1, "leads": 12}),
    (GI_TRACT, {"num_samples": 1, "precision": "fp16"}),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED)
def test_bodies_the_service_takes_match_the_documented_schema(doc: Document, client: httpx.Client, path: str,
                                                              body: dict) -> None:
    assert not doc.request_errors(path, body)
    response = client.post(path, json=body | {"num_samples": 1} if body.get("num_samples", 1) > 3 else body)  # small jobs
    assert response.status_code == 202, response.text
    doc.check(path, response)


@pytest.mark.parametrize(("path", "body"), REFUSED)
def test_bodies_the_service_refuses_fail_the_documented_schema(doc: Document, client: httpx.Client, path: str,
                                                               body: object) -> None:
    assert doc.request_errors(path, body), body
    response = client.post(path, json=body)
    assert response.status_code in (404, 422), response.text
    doc.check(path, response)


def test_real_responses_of_every_route_match_the_document(doc: Document, client: httpx.Client) -> None:
    created = client.post(ECG, json={"num_samples": 3, "seed": 5, "format": "npy"})
    doc.check(ECG, created)
    job_id = created.json()["job_id"]
    doc.check(ECG, client.post(ECG, content=b"{}", headers={"content-type": "text/plain"}))  # 415
    doc.check(ECG, client.post(ECG, content=b"{", headers={"content-type": "application/json"}))  # 422
    doc.check(ECG, client.post(ECG, json={"num_samples": 1, "version": 99}))  # 404
    long_job = submit(client, {"num_samples": 2000, "seed": 1, "format": "npy"})["job_id"]  # canceled below
    responses = {
        "/jobs/{job_id}": [client.get(f"/jobs/{job_id}"), client.get("/jobs/0123456789abcdef"), client.get("/jobs/a.b"),
                           client.delete(f"/jobs/{job_id}a")],
        "/jobs/{job_id}/result": [client.get(f"/jobs/{long_job}/result"), client.head(f"/jobs/{long_job}/result"),
                                  client.get("/jobs/0123456789abcdef/result"), client.head("/jobs/ab/result")],
        "/jobs/{job_id}/stream": [client.get("/jobs/0123456789abcdef/stream")],
        "/models": [client.get("/models")],
        "/models/{category}/{subcategory}": [client.get("/models/cardiovascular/ecg"), client.get("/models/digestive/liver"),
                                             client.get("/models/digestive/gi-tract")],
        "/healthz": [client.get("/healthz")],
        "/readyz": [client.get("/readyz")],
    }
    assert {r.status_code for r in responses["/jobs/{job_id}/result"][:2]} == {409}
    wait_finished(client, job_id)
    responses["/jobs/{job_id}"].append(client.get(f"/jobs/{job_id}"))
    responses["/jobs/{job_id}/result"] += [client.get(f"/jobs/{job_id}/result"), client.head(f"/jobs/{job_id}/result")]
    with client.stream("GET", f"/jobs/{job_id}/stream") as stream:
        stream.read()
        responses["/jobs/{job_id}/stream"].append(stream)
    responses["/jobs/{job_id}"].append(client.delete(f"/jobs/{long_job}"))  # 200 or 202
    wait_for(lambda: client.get(f"/jobs/{long_job}").json()["status"] == "canceled", 30, "the job to be canceled")
    responses["/jobs/{job_id}/stream"].append(client.get(f"/jobs/{long_job}/stream"))  # 409
    responses["/jobs/{job_id}/result"].append(client.get(f"/jobs/{long_job}/result"))  # 409
    responses["/jobs/{job_id}"] += [client.delete(f"/jobs/{job_id}"), client.delete(f"/jobs/{long_job}")]  # 200, 409
    seen: set[tuple[str, str, int]] = set()
    for template, answers in responses.items():
        for response in answers:
            doc.check(template, response)
            seen.add((template, response.request.method, response.status_code))
    assert {("/jobs/{job_id}", "DELETE", 409), ("/jobs/{job_id}/result", "GET", 200), ("/jobs/{job_id}/result", "HEAD", 200),
            ("/jobs/{job_id}/stream", "GET", 200), ("/jobs/{job_id}/stream", "GET", 409),
            ("/models/{category}/{subcategory}", "GET", 404), ("/jobs/{job_id}", "GET", 404)} <= seen


def test_responses_during_a_redis_outage_match_the_document(settings: Settings, ecg_model_dir: object) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    process, url = run_api(down)
    try:
        with httpx.Client(base_url=url) as app:
            doc = Document(app.get("/openapi.json").json())
            answers = [(ECG, app.post(ECG, json={"num_samples": 1})), ("/jobs/{job_id}", app.get("/jobs/abc")),
                       ("/jobs/{job_id}", app.delete("/jobs/abc")), ("/jobs/{job_id}/result", app.get("/jobs/abc/result")),
                       ("/jobs/{job_id}/result", app.head("/jobs/abc/result")),
                       ("/jobs/{job_id}/stream", app.get("/jobs/abc/stream")), ("/readyz", app.get("/readyz"))]
            for template, response in answers:
                assert response.status_code == 503, (template, response.text)
                doc.check(template, response)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_contributed_model_is_documented_at_once_with_its_own_schema(
        client: httpx.Client, extra_models: Path, tmp_path: Path) -> None:
    """Two models in one new subcategory: the first by id is the default, the other is named; both listed."""
    path = "/generate/integumentary/openapi-probe"
    store = ModelStore([extra_models])
    for model_id in ("tiny-probe-b", "tiny-probe-a"):
        store.install(make_model(tmp_path / model_id, id=model_id, subcategory="openapi-probe"))
    store.install(make_model(tmp_path / "a2", id="tiny-probe-a", subcategory="openapi-probe", formats=["npy", "png"]))
    wait_for(lambda: path in client.get("/openapi.json").json()["paths"], 5, "the document to list the new models")
    doc = Document(client.get("/openapi.json").json())
    validate(doc.spec)
    body_schema = doc.spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(body_schema["anyOf"]) == 3
    cases = [  # body, what the service does with it
        ({"num_samples": 1}, ("tiny-probe-a", 2)),
        ({"num_samples": 1, "format": "png", "version": 1}, ("tiny-probe-a", 1)),
        ({"num_samples": 1, "format": "npy", "model": "tiny-probe-a", "version": 2}, ("tiny-probe-a", 2)),
        ({"num_samples": 1, "model": "tiny-probe-b"}, ("tiny-probe-b", 1)),
        ({"num_samples": 1, "model": "tiny-probe-b", "version": 1}, ("tiny-probe-b", 1)),
        ({"num_samples": 1, "model": "tiny-probe-b", "version": 2}, 404),
        ({"num_samples": 1, "model": "tiny-probe-c"}, 404),
        ({"num_samples": 1, "version": 3}, 404),
        ({"num_samples": 1, "model": "tiny-probe-b", "leads": 12}, 422),
    ]
    for body, outcome in cases:
        response = client.post(path, json=body)
        doc.check(path, response)
        if isinstance(outcome, int):
            assert response.status_code == outcome, (body, response.text)
            assert doc.request_errors(path, body), body
        else:
            assert response.status_code == 202, (body, response.text)
            assert (response.json()["model"]["id"], response.json()["model"]["version"]) == outcome, body
            assert not doc.request_errors(path, body), (body, doc.request_errors(path, body))
