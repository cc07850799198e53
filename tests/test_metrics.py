"""`GET /metrics`: Prometheus' text format, read back with prometheus-client's own parser, from real API processes,
a real worker and a real Redis.

Requests are counted by route template and status (never by raw path), jobs, samples and job times as the workers
recorded them, the queue and the workers as Redis says; `deepsynthbody api --processes 2` answers the same whichever
process is asked, from a directory of its own that is gone once it stops.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from deepsynthbody.core import job_events
from deepsynthbody.core.embedded_redis import free_port
from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, answers, environment, submit, wait_finished, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of one scrape, on a connection of its own, by (name, sorted labels)."""
    response = httpx.get(f"{url}/metrics", headers={"connection": "close"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_requests_are_counted_by_route_template_and_status_never_by_raw_path(client: httpx.Client, api_url: str) -> None:
    before = scrape(api_url)
    ids = [secrets.token_hex(16) for _ in range(3)]
    for job_id in ids:
        assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get("/models/").status_code == 200  # served as /models
    assert client.get(f"/no-such-route/{ids[0]}").status_code == 404
    assert client.request("PROPFIND", "/models").status_code == 405
    after = scrape(api_url)

    assert delta(before, after, "dsb_http_requests_total", method="GET", route="/jobs/{job_id}", status="404") == 3
    assert delta(before, after, "dsb_http_requests_total", method="GET", route="/models", status="200") == 1
    assert delta(before, after, "dsb_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta(before, after, "dsb_http_requests_total", method="other", route="/models", status="405") == 1
    latency = {"method": "GET", "route": "/jobs/{job_id}"}
    assert delta(before, after, "dsb_http_request_duration_seconds_count", **latency) == 3
    assert delta(before, after, "dsb_http_request_duration_seconds_bucket", **latency, le="+Inf") == 3
    assert 0 < delta(before, after, "dsb_http_request_duration_seconds_sum", **latency) < 3
    labels = {v for (_, pairs) in after for _, v in pairs}
    assert not any(job_id in label for job_id in ids for label in labels)
    assert "PROPFIND" not in labels


def test_finished_jobs_count_their_samples_and_times(client: httpx.Client, api_url: str) -> None:
    before = scrape(api_url)
    chunked = submit(client, {"num_samples": 150, "seed": 1, "format": "npy"})  # 2 chunks + an archive job
    single = submit(client, {"num_samples": 10, "seed": 2, "format": "wfdb"})
    assert wait_finished(client, chunked["job_id"])["status"] == "finished"
    assert wait_finished(client, single["job_id"])["status"] == "finished"
    after = scrape(api_url)

    model = {"model": chunked["model"]["id"], "version": str(chunked["model"]["version"])}
    cpu = {"execution_provider": "CPUExecutionProvider"}  # what made them: this machine has no GPU
    assert delta(before, after, "dsb_samples_generated_total", **model, format="npy", **cpu) == 150
    assert delta(before, after, "dsb_samples_generated_total", **model, format="wfdb", **cpu) == 10
    for task, fmt, count in (("chunk", "npy", 2), ("archive", "npy", 1), ("generate", "wfdb", 1)):
        assert delta(before, after, "dsb_job_run_seconds_count", task=task, **model, format=fmt) == count, task
        assert delta(before, after, "dsb_job_run_seconds_bucket", task=task, **model, format=fmt, le="+Inf") == count
    for fmt in ("npy", "wfdb"):
        assert delta(before, after, "dsb_job_latency_seconds_count", **model, format=fmt) == 1
        assert delta(before, after, "dsb_job_latency_seconds_sum", **model, format=fmt) > 0
    assert value(after, "dsb_redis_up") == 1
    finished = [v for (name, pairs), v in after.items() if name == "dsb_jobs" and ("state", "finished") in pairs]
    assert finished and finished[0] >= 4  # RQ jobs: 2 chunks, an archive, a single job
    queue = next(dict(pairs)["queue"] for (name, pairs) in after if name == "dsb_queue_depth")
    assert value(after, "dsb_workers", queue=queue, state="idle") + value(after, "dsb_workers", queue=queue,
                                                                          state="busy") >= 1  # the session's worker


def test_samples_counted_before_the_provider_label_count_under_unknown(settings: Settings, api_url: str) -> None:
    """A Redis kept from a version that counted samples by model, version and format only: still scraped, its
    counts under execution_provider="unknown", beside the same model's counts with a provider."""
    key = job_events.metrics_key(settings.queue)
    model = f"earlier-{secrets.token_hex(4)}"
    with Redis.from_url(settings.redis_url) as redis:
        redis.hincrby(key, json.dumps(["samples", model, "1", "npy"], separators=(",", ":")), 7)
        redis.hincrby(key, json.dumps(["samples", model, "1", "npy", "CPUExecutionProvider"], separators=(",", ":")), 5)
    after = scrape(api_url)
    labels = {"model": model, "version": "1", "format": "npy"}
    assert value(after, "dsb_samples_generated_total", **labels, execution_provider="unknown") == 7
    assert value(after, "dsb_samples_generated_total", **labels, execution_provider="CPUExecutionProvider") == 5


def test_with_keys_required_metrics_need_a_key(settings: Settings, ecg_model_dir: Path) -> None:
    """Like every route but the probes and the docs: Prometheus sends it (`authorization: credentials: KEY`)."""
    from tests.helpers.auth_api import new_key, start_api, stop

    own = settings.model_copy(update={"queue": f"metrics-{secrets.token_hex(4)}"})
    process, url = start_api(own, DSB_AUTH="required")
    try:
        refused = httpx.get(f"{url}/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        key = new_key(own, "prometheus")
        answered = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"})
        assert answered.status_code == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(answered.text) for s in family.samples}
        # the refused scrape is counted too, under its route
        assert value(samples, "dsb_http_requests_total", method="GET", route="/metrics", status="401") == 1
        assert key not in answered.text
    finally:
        stop(process)


def _api_processes(settings: Settings, processes: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "api", "--port", str(port),
                                    "--processes", str(processes)], cwd=ROOT, stdout=out, stderr=out,
                                   env=environment(settings, DSB_LOG_FORMAT="json"))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{url}/healthz"), 60, "the API to answer")
    return process, url


@pytest.fixture
def two_processes(settings: Settings, ecg_model_dir: Path,
                  tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Settings, Path]]:
    """`deepsynthbody api --processes 2` on a queue of its own, which no worker serves; JSON logs in a file."""
    own = settings.model_copy(update={"queue": f"metrics-{secrets.token_hex(4)}"})
    log = tmp_path / "api.log"
    process, url = _api_processes(own, 2, log)
    yield process, url, own, log
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def _multiprocess_dir(process: subprocess.Popen[bytes]) -> Path:
    children = psutil.Process(process.pid).children(recursive=True)
    dirs = {child.environ().get("PROMETHEUS_MULTIPROC_DIR") for child in children}
    assert len(dirs) == 1 and None not in dirs, dirs
    return Path(dirs.pop())


def test_two_api_processes_answer_the_same_and_clean_up(
        two_processes: tuple[subprocess.Popen[bytes], str, Settings, Path]) -> None:
    process, url, _, log = two_processes
    directory = _multiprocess_dir(process)
    assert directory.is_dir()

    def lookup(_: int) -> int:  # a connection each, so both processes take some
        return httpx.get(f"{url}/jobs/{secrets.token_hex(16)}", headers={"connection": "close"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lookup, range(60))) == {404}
    pids = {int(f.stem.rsplit("_", 1)[1]) for f in directory.glob("counter_*.db")}
    assert len(pids) == 2, f"both processes served requests: {pids}"
    with httpx.Client(base_url=url, timeout=30) as http:
        jobs = [submit(http, {"num_samples": 1, "seed": i, "format": "npy"})["job_id"] for i in range(3)]
        assert http.delete(f"/jobs/{jobs[0]}").status_code == 200

    seen = set()
    for _ in range(12):  # each scrape on a new connection: either process answers
        samples = scrape(url)
        counted = value(samples, "dsb_http_requests_total", method="GET", route="/jobs/{job_id}", status="404")
        assert counted == 60, counted
        gauges = {k: v for k, v in samples.items() if k[0] in ("dsb_queue_depth", "dsb_jobs")}
        assert value(samples, "dsb_queue_depth", queue=two_processes[2].queue) == 2
        assert value(samples, "dsb_jobs", queue=two_processes[2].queue, state="queued") == 2
        assert value(samples, "dsb_jobs", queue=two_processes[2].queue, state="canceled") == 1
        seen.add(tuple(sorted(gauges.items())))
    assert len(seen) == 1  # the Redis-derived numbers are the same from every process

    process.terminate()
    process.wait(timeout=30)
    deadline = time.monotonic() + 5
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not directory.exists()
    # uvicorn's processes, new interpreters, log as configured too (DSB_LOG_FORMAT=json): every line is JSON
    records = [json.loads(line) for line in log.read_text().splitlines()]
    started = {r["message"] for r in records if r["message"].startswith("Started server process")}
    assert len(started) == 2, started
    assert sum(r.get("state") == "queued" for r in records) == 3


def test_a_killed_worker_is_counted_silent_within_seconds(settings: Settings, ecg_model_dir: Path) -> None:
    """Live workers are those whose heartbeat is fresh, as /readyz counts them: not RQ's registration, which outlives
    a SIGKILLed worker for minutes."""
    import signal

    from tests.conftest import start_worker
    from tests.helpers.auth_api import start_api, stop

    own = settings.model_copy(update={"queue": f"metrics-{secrets.token_hex(4)}"})
    api, url = start_api(own)
    worker = start_worker(own, batch_size=4)
    try:
        assert value(scrape(url), "dsb_workers", queue=own.queue, state="idle") == 1
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed = time.monotonic()
        wait_for(lambda: value(scrape(url), "dsb_workers", queue=own.queue, state="silent") == 1, 20,
                 "the killed worker to be counted silent")
        assert time.monotonic() - killed < 15
        assert value(scrape(url), "dsb_workers", queue=own.queue, state="idle") == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        stop(api)
