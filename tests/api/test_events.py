"""Following a job: Server-Sent Events (`/jobs/{id}/events`) and the long poll (`/jobs/{id}?wait=`).

Both wake on the Redis message the workers publish as they write progress, and read nothing from Redis while
nothing changes: a job parked in a queue no worker reads is followed by many clients at once, the Redis commands
that cost are counted, and a published change reaches every client at once.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from deepsynthbody.core import job_changes
from deepsynthbody.core.settings import Settings
from tests.api.test_openapi import Document
from tests.conftest import submit, wait_finished
from tests.helpers.auth_api import client as key_client
from tests.helpers.auth_api import new_key, start_api, stop


def read_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event, data) of each SSE message, as an EventSource parses them."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def test_the_events_of_a_job_are_its_states_its_progress_and_its_end_with_the_archive_link(
        client: httpx.Client) -> None:
    job_id = submit(client, {"num_samples": 60, "seed": 3, "format": "npy"})["job_id"]
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = list(read_events(response))  # the server closes the stream once the job ends
    names = [name for name, _ in events]
    assert names[0] == "state" and names[-1] == "end" and names.count("end") == 1, names
    assert events[0][1]["job_id"] == job_id and events[0][1]["status"] in ("queued", "started")
    done = [data["progress"]["done"] for name, data in events if name == "progress"]
    assert len(done) >= 3 and done == sorted(done) and done[-1] <= 60, done  # batches of 7: several steps
    end = events[-1][1]
    assert end["status"] == "finished" and end["progress"] == {"done": 60, "total": 60}
    assert end["links"]["result"] == f"/jobs/{job_id}/result" and end["links"]["events"] == f"/jobs/{job_id}/events"
    assert client.get(end["links"]["result"]).status_code == 200
    # a finished job's stream is its end at once
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert [name for name, _ in read_events(response)] == ["end"]


def test_a_failed_job_ends_its_events_with_its_error(client: httpx.Client, broken_model: str) -> None:
    job_id = submit(client, {"num_samples": 2}, path=broken_model)["job_id"]
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        events = list(read_events(response))
    assert events[-1][0] == "end" and events[-1][1]["status"] == "failed" and events[-1][1]["error"]


@pytest.fixture
def parked_job(client: httpx.Client, settings: Settings) -> Iterator[tuple[Redis, Job]]:
    """A copy of a real job, queued on a queue no worker reads: it stays queued until the test changes it."""
    real = submit(client, {"num_samples": 3, "seed": 9, "format": "npy"})["job_id"]
    wait_finished(client, real)
    redis = Redis.from_url(str(settings.redis_url))
    original = Job.fetch(real, connection=redis, serializer=JSONSerializer)
    job_id = uuid.uuid4().hex
    spec = {**original.args[0], "job_id": job_id}
    job = Job.create(original.func_name, args=[spec], connection=redis, serializer=JSONSerializer, id=job_id,
                     origin=settings.queue, meta={"owner": original.meta.get("owner")}, result_ttl=600, ttl=600)
    job.set_status("queued")
    job.save()
    yield redis, job
    job.delete()
    redis.close()


def _reads(redis: Redis) -> int:
    """HGETALL calls so far: how RQ reads a job."""
    return int(redis.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_waiting_clients_read_nothing_until_the_job_changes_and_then_all_wake_at_once(
        client: httpx.Client, settings: Settings, parked_job: tuple[Redis, Job], api_url: str) -> None:
    redis, job = parked_job
    followers, pollers = 8, 8
    arrived: list[float] = []

    def follow() -> list[tuple[str, dict]]:
        with httpx.Client(base_url=api_url, timeout=30) as http, http.stream("GET", f"/jobs/{job.id}/events") as response:
            seen = []
            for name, data in read_events(response):
                seen.append((name, data))
                if name == "progress":
                    arrived.append(time.monotonic())
                    return seen
        return seen

    def poll() -> tuple[float, dict]:
        with httpx.Client(base_url=api_url, timeout=30) as http:
            answer = http.get(f"/jobs/{job.id}", params={"wait": 20})
            assert answer.status_code == 200, answer.text
            return time.monotonic(), answer.json()

    with ThreadPoolExecutor(followers + pollers) as pool:
        streams = [pool.submit(follow) for _ in range(followers)]
        polls = [pool.submit(poll) for _ in range(pollers)]
        time.sleep(2)  # every client connected and waiting
        before = _reads(redis)
        time.sleep(3)
        idle_reads = _reads(redis) - before
        assert idle_reads <= 3, f"{idle_reads} job reads in 3 s while nothing changed: clients poll Redis"
        assert not any(f.done() for f in streams + polls)
        job.meta["progress"] = {"done": 2, "total": 3}
        job.save_meta()
        changed_at = time.monotonic()
        job_changes.publish(redis, settings.queue, job.id)
        seen = [f.result(timeout=10) for f in streams]
        answers = [f.result(timeout=10) for f in polls]
    for events in seen:
        assert [name for name, _ in events] == ["state", "progress"]
        assert events[0][1]["status"] == "queued" and events[1][1]["progress"] == {"done": 2, "total": 3}
    for at, answer in answers:
        assert answer["progress"]["done"] == 2 and at - changed_at < 2, (at - changed_at, answer)
    assert max(arrived) - changed_at < 2
    print(f"{followers} streams + {pollers} long polls: {idle_reads} job reads in 3 s idle; every client woken "
          f"{max(max(arrived), *(at for at, _ in answers)) - changed_at:.3f} s after the change")


def test_the_long_poll_answers_at_the_deadline_unchanged_and_at_once_for_an_ended_job(
        client: httpx.Client, parked_job: tuple[Redis, Job]) -> None:
    _, job = parked_job
    started = time.monotonic()
    answer = client.get(f"/jobs/{job.id}", params={"wait": 1.5})
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    assert 1.4 < time.monotonic() - started < 5
    finished = submit(client, {"num_samples": 2, "seed": 1, "format": "npy"})["job_id"]
    wait_finished(client, finished)
    started = time.monotonic()
    assert client.get(f"/jobs/{finished}", params={"wait": 60}).json()["status"] == "finished"
    assert time.monotonic() - started < 1


def test_the_long_poll_returns_when_a_running_job_moves(client: httpx.Client) -> None:
    job_id = submit(client, {"num_samples": 80, "seed": 4, "format": "npy"})["job_id"]
    seen = client.get(f"/jobs/{job_id}").json()
    moves = 0
    while seen["status"] not in ("finished", "failed", "canceled"):
        started = time.monotonic()
        now = client.get(f"/jobs/{job_id}", params={"wait": 30}).json()
        assert now != seen and time.monotonic() - started < 20
        seen, moves = now, moves + 1
    assert seen["status"] == "finished" and moves >= 3


@pytest.mark.parametrize("wait", ["-1", "61", "soon", "nan", "inf"])
def test_a_bad_wait_is_a_422_naming_it(client: httpx.Client, wait: str) -> None:
    answer = client.get("/jobs/0123456789abcdef", params={"wait": wait})
    assert answer.status_code == 422, answer.text
    assert "wait" in answer.text
    Document(client.get("/openapi.json").json()).check("/jobs/{job_id}", answer)


def test_the_document_declares_both_exactly(client: httpx.Client) -> None:
    doc = Document(client.get("/openapi.json").json())
    events = doc.spec["paths"]["/jobs/{job_id}/events"]
    assert set(events) == {"get"}
    assert set(events["get"]["responses"]) == {"200", "401", "404", "429", "503"}
    assert "text/event-stream" in events["get"]["responses"]["200"]["content"]
    wait = next(p for p in doc.spec["paths"]["/jobs/{job_id}"]["get"]["parameters"] if p["name"] == "wait")
    assert wait["in"] == "query" and not wait.get("required")
    job_id = submit(client, {"num_samples": 2, "seed": 1, "format": "npy"})["job_id"]
    wait_finished(client, job_id)
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        response.read()
        doc.check("/jobs/{job_id}/events", response)
    doc.check("/jobs/{job_id}/events", client.get("/jobs/0123456789abcdef/events"))
    doc.check("/jobs/{job_id}", client.get(f"/jobs/{job_id}", params={"wait": 1}))


def test_another_key_gets_the_404_of_an_unknown_job(settings: Settings, worker: subprocess.Popen[bytes],
                                                    ecg_model_dir: Path) -> None:
    process, url = start_api(settings, DSB_AUTH="required")
    try:
        with key_client(url, new_key(settings, "ev-alice")) as alice, key_client(url, new_key(settings, "ev-bob")) as bob:
            job_id = submit(alice, {"num_samples": 2, "seed": 1, "format": "npy"})["job_id"]
            with alice.stream("GET", f"/jobs/{job_id}/events") as response:
                assert list(read_events(response))[-1][0] == "end"
            other = uuid.uuid4().hex
            for path, params in [("/jobs/{}/events", {}), ("/jobs/{}", {"wait": 1})]:
                hidden = bob.get(path.format(job_id), params=params)
                unknown = bob.get(path.format(other), params=params)
                assert hidden.status_code == unknown.status_code == 404
                assert hidden.text == unknown.text.replace(other, job_id)
            assert httpx.get(f"{url}/jobs/{job_id}/events").status_code == 401
    finally:
        stop(process)
