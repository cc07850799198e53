"""API keys on every route but health and docs; a job is its key's: another key gets the 404 of an unknown job."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from redis import Redis

from deepsynthbody.core import keys
from deepsynthbody.core.settings import Settings
from tests.api.test_openapi import Document
from tests.conftest import ECG, wait_finished, wait_for
from tests.helpers.auth_api import client, new_key, start_api, stop


@pytest.fixture(scope="module")
def auth_url(settings: Settings, worker: subprocess.Popen[bytes], ecg_model_dir: Path) -> Iterator[str]:
    process, url = start_api(settings, DSB_AUTH="required")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def people(settings: Settings, auth_url: str) -> Iterator[dict[str, httpx.Client]]:
    made = {"alice": client(auth_url, new_key(settings, "alice")),
            "bob": client(auth_url, new_key(settings, "bob")),
            "admin": client(auth_url, new_key(settings, "ops", admin=True))}
    yield made
    for http in made.values():
        http.close()


def _submit(http: httpx.Client, samples: int = 2, **body: object) -> str:
    response = http.post(ECG, json={"num_samples": samples, "seed": 1, "format": "npy", **body})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _unknown_body(http: httpx.Client, method: str, path: str, job_id: str) -> tuple[int, str]:
    """What the route answers for an id no job has, written with `job_id` in its place."""
    other = uuid.uuid4().hex
    response = http.request(method, path.format(other))
    return response.status_code, response.text.replace(other, job_id)


def test_no_wrong_or_revoked_key_gets_401_with_a_challenge(settings: Settings, auth_url: str) -> None:
    key = new_key(settings, "short-lived")
    with Redis.from_url(str(settings.redis_url)) as redis:
        key_id = next(k.id for k in keys.list_keys(redis) if k.name == "short-lived")
        with client(auth_url, key) as http:
            assert http.get("/models").status_code == 200
            keys.revoke(redis, key_id)
            revoked = http.get("/models")  # the very next request: nothing cached
    refused = {"none": httpx.get(f"{auth_url}/models"),
               "wrong": httpx.get(f"{auth_url}/models", headers={"Authorization": "Bearer dsb_" + "x" * 43}),
               "basic": httpx.get(f"{auth_url}/models", auth=("user", key)),
               "empty": httpx.get(f"{auth_url}/models", headers={"Authorization": "Bearer"}),
               "revoked": revoked,
               "post": httpx.post(f"{auth_url}{ECG}", json={"num_samples": 1}),
               "unknown route": httpx.get(f"{auth_url}/no/such/route")}
    for what, response in refused.items():
        assert response.status_code == 401, (what, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer"), what
        assert "Bearer" in response.json()["message"] or "not valid" in response.json()["message"], what
    # a wrong key and a revoked one read the same: nothing says which keys exist
    assert refused["wrong"].json() == refused["revoked"].json()
    assert key not in refused["revoked"].text
    for public in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/healthz/"):
        assert httpx.get(f"{auth_url}{public}").status_code in (200, 503), public
    docs_page = httpx.get(f"{auth_url}/docs").text  # its own assets load without a key too
    assets = re.findall(r'(?:href|src)="(/docs/[^"]+)"', docs_page)
    assert assets and all(httpx.get(f"{auth_url}{asset}").status_code == 200 for asset in assets)


def test_the_document_declares_the_bearer_scheme_and_its_401s(auth_url: str, people: dict[str, httpx.Client]) -> None:
    spec = httpx.get(f"{auth_url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKey"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["APIKey"]["description"]}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation
            else:
                assert operation["security"] == [{"APIKey": []}], (method, path)
                assert "401" in operation["responses"], (method, path)
    doc = Document(spec)
    job_id = _submit(people["alice"])
    for template, response in [(ECG, httpx.post(f"{auth_url}{ECG}", json={"num_samples": 1})),
                               ("/jobs/{job_id}", httpx.get(f"{auth_url}/jobs/{job_id}")),
                               ("/jobs/{job_id}/result", httpx.head(f"{auth_url}/jobs/{job_id}/result")),
                               ("/jobs", httpx.get(f"{auth_url}/jobs")),
                               ("/admin/keys", httpx.get(f"{auth_url}/admin/keys")),
                               ("/models", httpx.get(f"{auth_url}/models")),
                               ("/jobs/{job_id}", people["bob"].get(f"/jobs/{job_id}")),
                               ("/jobs", people["alice"].get("/jobs")),
                               ("/admin/keys", people["bob"].get("/admin/keys")),
                               ("/admin/keys", people["admin"].get("/admin/keys"))]:
        doc.check(template, response)


def test_a_job_is_hidden_from_other_keys_exactly_like_an_unknown_job(people: dict[str, httpx.Client]) -> None:
    alice, bob, admin = people["alice"], people["bob"], people["admin"]
    job_id = _submit(alice, 3)
    assert wait_finished(alice, job_id)["status"] == "finished"
    for method, path in [("GET", "/jobs/{}"), ("GET", "/jobs/{}/result"), ("HEAD", "/jobs/{}/result"),
                         ("GET", "/jobs/{}/stream"), ("DELETE", "/jobs/{}")]:
        response = bob.request(method, path.format(job_id))
        assert (response.status_code, response.text) == _unknown_body(bob, method, path, job_id), (method, path)
        assert response.status_code == 404
        unknown = bob.request(method, path.format(uuid.uuid4().hex))
        assert {k: v for k, v in response.headers.items() if k != "date"} == {
            k: v for k, v in unknown.headers.items() if k != "date"}
    assert job_id not in bob.get("/jobs").text
    # the owner and an admin see it
    for http in (alice, admin):
        assert http.get(f"/jobs/{job_id}").json()["status"] == "finished"
        assert http.get(f"/jobs/{job_id}/result").status_code == 200
        with http.stream("GET", f"/jobs/{job_id}/stream") as stream:
            assert stream.status_code == 200 and len(list(stream.iter_lines())) == 3
        assert job_id in [job["job_id"] for job in http.get("/jobs", params={"limit": 100}).json()["jobs"]]


def test_another_key_cannot_cancel_a_job(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    job_id = _submit(alice, 60)
    assert bob.delete(f"/jobs/{job_id}").status_code == 404
    assert wait_finished(alice, job_id)["status"] == "finished"  # it ran to the end
    running = _submit(alice, 2000)
    assert people["admin"].delete(f"/jobs/{running}").status_code in (200, 202)  # an admin can
    wait_for(lambda: alice.get(f"/jobs/{running}").json()["status"] == "canceled", 30, "the cancel")


def test_jobs_lists_the_callers_jobs_newest_first_in_pages(settings: Settings, auth_url: str) -> None:
    with client(auth_url, new_key(settings, "lister")) as http:
        assert http.get("/jobs").json() == {"jobs": [], "next_cursor": None}
        made = [_submit(http, 1, seed=i) for i in range(5)]
        pages, cursor = [], None
        while True:
            page = http.get("/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            pages.append([job["job_id"] for job in page["jobs"]])
            assert all(set(job) >= {"status", "progress", "request", "links", "created_at"} for job in page["jobs"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        assert sum(pages, []) == made[::-1]  # newest first, each once
        assert [job["job_id"] for job in http.get("/jobs", params={"limit": 100}).json()["jobs"]] == made[::-1]
        bad = http.get("/jobs", params={"cursor": "yesterday"})
        assert bad.status_code == 422 and "cursor" in bad.json()["message"]
        assert http.get("/jobs", params={"limit": 0}).status_code == 422
        for job_id in made:
            wait_finished(http, job_id)


def test_admins_manage_keys_over_http(settings: Settings, auth_url: str, people: dict[str, httpx.Client]) -> None:
    admin, bob = people["admin"], people["bob"]
    made = admin.post("/admin/keys", json={"name": "lab 7", "samples_per_day": 500, "max_active_jobs": 2})
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["key"].startswith("dsb_") and created["name"] == "lab 7" and created["samples_per_day"] == 500
    with client(auth_url, created["key"]) as lab:
        assert lab.get("/models").status_code == 200
        assert lab.get("/admin/keys").status_code == 403  # not an admin
        listed = admin.get("/admin/keys").json()["keys"]
        mine = next(k for k in listed if k["id"] == created["id"])
        assert mine["last_used"] is not None and "key" not in mine
        assert created["key"] not in admin.get("/admin/keys").text
        with Redis.from_url(str(settings.redis_url)) as redis:  # stored as its hash only
            assert not any(created["key"].encode() in (redis.dump(k) or b"") for k in redis.scan_iter("dsb:keys:*"))
        assert admin.delete(f"/admin/keys/{created['id']}").json()["name"] == "lab 7"
        assert lab.get("/models").status_code == 401
    assert admin.delete(f"/admin/keys/{created['id']}").status_code == 404
    assert bob.post("/admin/keys", json={"name": "mine", "admin": True}).status_code == 403
    assert admin.post("/admin/keys", json={"name": ""}).status_code == 422
    assert admin.post("/admin/keys", json={"name": "x", "max_active_jobs": 0}).status_code == 422


def test_auth_is_required_by_default_off_loopback_and_off_warns(settings: Settings, ecg_model_dir: Path,
                                                                 tmp_path: Path) -> None:
    process, url = start_api(settings, host="0.0.0.0")  # noqa: S104 - the point of the test
    try:
        assert httpx.get(f"{url}/models").status_code == 401
    finally:
        stop(process)
    log = tmp_path / "api.log"
    with log.open("wb") as stderr:
        process, url = start_api(settings, host="0.0.0.0", stderr=stderr, DSB_AUTH="off")  # noqa: S104
        try:
            assert httpx.get(f"{url}/models").status_code == 200
        finally:
            stop(process)
    assert "DSB_AUTH=off while listening on 0.0.0.0" in log.read_text()
    assert keys.is_loopback("127.0.0.1") and keys.is_loopback("::1") and keys.is_loopback("localhost")
    assert not keys.is_loopback("0.0.0.0") and not keys.is_loopback("10.1.2.3")  # noqa: S104


def test_a_key_is_checked_in_one_round_trip_with_its_last_use(settings: Settings, auth_url: str) -> None:
    key = new_key(settings, "timed")
    with Redis.from_url(str(settings.redis_url)) as redis, client(auth_url, key) as http:
        assert http.get("/models").status_code == 200
        record = redis.hgetall(keys.record_key(keys.digest(key)))
        assert abs(float(record[b"last_used"]) - time.time()) < 5
        assert key.encode() not in b"".join(record.values())


def test_keys_checked_together_each_get_their_own_answer(settings: Settings, auth_url: str,
                                                          people: dict[str, httpx.Client]) -> None:
    """Concurrent requests are checked in one pipeline: each still gets its own caller, and a Redis that lost its
    scripts (restarted, flushed) is given the script again."""
    mine = {name: {job["job_id"] for job in people[name].get("/jobs", params={"limit": 100}).json()["jobs"]}
            for name in ("alice", "bob")}
    with Redis.from_url(str(settings.redis_url)) as redis:
        redis.script_flush()

    def call(i: int) -> tuple[str, int, set[str]]:
        who = ("alice", "bob", "wrong")[i % 3]
        http = people.get(who)
        if http is None:
            return who, httpx.get(f"{auth_url}/jobs", headers={"Authorization": "Bearer dsb_wrong"}).status_code, set()
        response = http.get("/jobs", params={"limit": 100})
        return who, response.status_code, {job["job_id"] for job in response.json()["jobs"]}

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, range(36)))
    for who, status, jobs in answers:
        assert status == (401 if who == "wrong" else 200), who
        if who != "wrong":
            assert jobs == mine[who], who


def test_a_redis_outage_while_checking_a_key_is_503_not_500(settings: Settings, ecg_model_dir: Path) -> None:
    from tests.conftest import free_port

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    process, url = start_api(down, DSB_AUTH="required")
    try:
        doc = Document(httpx.get(f"{url}/openapi.json").json())
        response = httpx.get(f"{url}/jobs/{uuid.uuid4().hex}", headers={"Authorization": "Bearer dsb_anything"})
        assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
        assert "unreachable" in response.json()["message"]
        doc.check("/jobs/{job_id}", response)
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        stop(process)


def test_a_download_link_opens_its_archive_without_the_header_until_it_expires(
        settings: Settings, auth_url: str, people: dict[str, httpx.Client]) -> None:
    """`POST /jobs/{id}/result/link`: a URL a browser's download manager (or wget on another host) can fetch with no
    header; for that job's archive only, until it expires, and never again once its key is revoked."""
    key = new_key(settings, "carol")
    carol = client(auth_url, key)
    job_id, other_job = _submit(carol, 3), _submit(carol, 2, seed=2)
    for job in (job_id, other_job):
        assert wait_finished(carol, job)["status"] == "finished"
    started = time.time()
    answer = carol.post(f"/jobs/{job_id}/result/link")
    assert answer.status_code == 200, answer.text
    url, expires_at = answer.json()["url"], answer.json()["expires_at"]
    assert url.startswith(f"/jobs/{job_id}/result?link=")
    expires = datetime.fromisoformat(expires_at).timestamp()
    assert started + settings.download_link_seconds - 1 <= expires <= time.time() + settings.download_link_seconds

    archive = carol.get(f"/jobs/{job_id}/result")
    with httpx.Client(base_url=auth_url, timeout=60) as nobody:  # no Authorization header at all
        through_link = nobody.get(url)
        assert through_link.status_code == 200, through_link.text
        assert through_link.content == archive.content
        assert through_link.headers["content-disposition"] == archive.headers["content-disposition"]
        head = nobody.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(archive.content))
        part = nobody.get(url, headers={"Range": "bytes=10-19"})  # a resumed download
        assert part.status_code == 206 and part.content == archive.content[10:20]

        def refused(path: str, method: str = "GET") -> str:
            response = nobody.request(method, path)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            return response.json()["message"]

        signature = url.rsplit(".", 1)[1]
        tampered = url[:-1] + ("0" if signature[-1] != "0" else "1")
        assert "not valid" in refused(tampered)
        assert "not valid" in refused(url.replace(job_id, other_job))  # another job of the same key
        assert "not one this service makes" in refused(f"/jobs/{job_id}/result?link=abc")
        assert "needs an API key" in refused(f"/jobs/{job_id}?link={url.split('link=')[1]}")  # the archive only
        assert "needs an API key" in refused(url, "DELETE")
        key_id, _, _ = url.split("link=")[1].split(".")
        with Redis.from_url(str(settings.redis_url)) as redis:
            key_digest = keys.key_digest_of(redis, key_id)
            assert key_digest == keys.digest(key)
            past = int(time.time()) - 1
            expired = refused(f"/jobs/{job_id}/result?link={keys.download_link(key_id, key_digest, job_id, past)}")
            assert "expired at" in expired and f"POST /jobs/{job_id}/result/link" in expired
            keys.revoke(redis, key_id)
        assert "not valid" in refused(url)  # its key revoked: the link is dead too

    # the link is asked for like the archive: another key's job is unknown, an unfinished job has none yet
    alice_job = _submit(people["alice"], 2)
    assert people["bob"].post(f"/jobs/{alice_job}/result/link").status_code == 404
    running = _submit(people["alice"], 2000)
    assert people["alice"].post(f"/jobs/{running}/result/link").status_code == 409
    people["alice"].delete(f"/jobs/{running}")
    carol.close()


def test_without_keys_the_download_link_is_the_archives_own_path(client: httpx.Client) -> None:
    job_id = _submit(client, 2)
    assert wait_finished(client, job_id)["status"] == "finished"
    answer = client.post(f"/jobs/{job_id}/result/link")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"url": f"/jobs/{job_id}/result", "expires_at": None}
