"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis), with keys off and on.

Every operation the served document lists gets a bounded number of generated requests, valid ones and invalid
ones, and every answer is checked: never a 5xx, a status the document declares for the operation, a body that
matches the schema declared for it, declared headers present and well-formed, a declared content type, and
invalid input refused with a 4xx. Each API is a real `deepsynthbody api` process on a queue of its own (no worker:
what the fuzzer submits stays queued) with `DSB_MAX_SAMPLES=3`, so no generated request makes a big job; the
document says so too, and the fuzzer reads its bounds from there. Examples are derived from a fixed seed
(`derandomize`), so a run is repeatable.

schemathesis' pytest plugin does not run under pytest 9 (it sets a test node's private `_nodeid`), so each
operation's cases are drawn from its hypothesis strategy here, through schemathesis' own Python API.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deepsynthbody.core.settings import Settings
from tests.helpers.auth_api import new_key, start_api, stop

MAX_SAMPLES = 3
# per operation: the suite's run takes about half a minute on 2 cores; FUZZ_EXAMPLES=200 digs deeper by hand
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """schemathesis' not_a_server_error, but for the readiness probe's 503 saying what is missing (no worker serves
    these APIs' queues): the answer it exists to give."""
    if (case.method, case.path, response.status_code) == ("GET", "/readyz", 503):
        body = response.json()
        assert body["ready"] is False and any("no worker" in p for p in body["problems"]), body
        return True
    return not_a_server_error(ctx, response, case)


@schemathesis.serializer("application/zip", "application/gzip")
def _archive_bytes(ctx, value: object) -> bytes:  # noqa: ANN001 - schemathesis' context
    """`POST /models` takes a packed model folder: the fuzzer sends the bytes it generates for it as they are (a
    string as UTF-8), so the upload route meets bodies that are no archive at all."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: the failing request is reported as found
                suppress_health_check=list(HealthCheck))


def _own(settings_: Settings) -> Settings:
    return settings_.model_copy(update={"queue": f"fuzz-{secrets.token_hex(4)}"})


@pytest.fixture(scope="module")
def api_without_keys(settings: Settings, ecg_model_dir: Path, broken_model: str) -> Iterator[str]:
    process, url = start_api(_own(settings), DSB_MAX_SAMPLES=str(MAX_SAMPLES), DSB_AUTH="off")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def api_with_keys(settings: Settings, ecg_model_dir: Path, broken_model: str) -> Iterator[tuple[str, str]]:
    own = _own(settings)
    process, url = start_api(own, DSB_MAX_SAMPLES=str(MAX_SAMPLES), DSB_AUTH="required")
    yield url, new_key(own, f"fuzzer-{secrets.token_hex(3)}")
    stop(process)


def _strategy(operation) -> st.SearchStrategy[Case]:  # noqa: ANN001 - schemathesis' APIOperation
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    try:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    except Exception:  # noqa: BLE001 - an operation with nothing to get wrong (no parameters, no body)
        pass
    return st.one_of(strategies)


def fuzz(url: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Every operation of the served document; (operations fuzzed, one report per failing operation)."""
    schema = from_url(f"{url}/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    failures = []
    assert {"/metrics", "/readyz", "/jobs/{job_id}"} <= {operation.path for operation in operations}
    for operation in operations:
        @FUZZ
        @given(case=_strategy(operation))
        def check(case: Case) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=30)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collected: every failing operation is reported, not the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return len(operations), failures


def test_the_document_bounds_what_the_fuzzer_submits(api_without_keys: str) -> None:
    doc = httpx.get(f"{api_without_keys}/openapi.json").json()
    limits = {schema["properties"]["num_samples"]["maximum"] for name, schema in doc["components"]["schemas"].items()
              if name.endswith("Request") and "num_samples" in schema.get("properties", {})}
    assert limits == {MAX_SAMPLES}


def test_fuzzing_every_operation_without_keys(api_without_keys: str) -> None:
    count, failures = fuzz(api_without_keys, {})
    assert count >= 10
    assert not failures, "\n\n".join(failures)


def test_fuzzing_every_operation_with_a_key(api_with_keys: tuple[str, str]) -> None:
    url, key = api_with_keys
    count, failures = fuzz(url, {"Authorization": f"Bearer {key}"})
    assert count >= 10
    assert not failures, "\n\n".join(failures)


def test_what_the_fuzzer_found_stays_fixed(api_without_keys: str, api_with_keys: tuple[str, str]) -> None:
    """Found by the fuzzer, each answered as the document says: an invalid key name was a 422 with a string
    `detail` (the document: a list of problems); a body that is not UTF-8 a 400 the document did not declare; with
    keys off, the document demanded a key (a request without one was not refused, as it said it would be)."""
    from tests.api.test_openapi import Document

    for url, headers in ((api_without_keys, {}), (api_with_keys[0], {"Authorization": f"Bearer {api_with_keys[1]}"})):
        doc = Document(httpx.get(f"{url}/openapi.json", headers=headers).json())
        for body in ('{"name": ";\\u00f9\\u00e8"}'.encode(), b"\x0fX\xff#]"):
            response = httpx.post(f"{url}/admin/keys", content=body, headers={**headers, "content-type": "application/json"})
            if headers:  # not an admin's key: FastAPI reads the body before the route refuses the key
                assert response.status_code in (403, 422), response.text
            else:
                assert response.status_code == 422, response.text
                assert response.json()["detail"][0]["loc"] == (["body", "name"] if body[:1] == b"{" else ["body"])
            doc.check("/admin/keys", response)
    keys_off = httpx.get(f"{api_without_keys}/openapi.json").json()["paths"]["/jobs/{job_id}"]["get"]
    keys_on = httpx.get(f"{api_with_keys[0]}/openapi.json").json()["paths"]["/jobs/{job_id}"]["get"]
    assert keys_off["security"] == [{}, {"APIKey": []}] and keys_on["security"] == [{"APIKey": []}]
