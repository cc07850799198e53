"""One log line per job state change, with the job id and the owner's name (never the key), in every process:
the API logs `queued`, the workers `started`, `finished`, `failed` and `requeued`; as plain text, and with
`DSB_LOG_FORMAT=json` as one JSON object per line (every line of every process), the job's fields included.

Real processes: `deepsynthbody api` with keys required, `deepsynthbody worker`, a real Redis.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Worker

from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, ROOT, environment, wait_finished, wait_for
from tests.helpers.auth_api import client, new_key, start_api, stop


@pytest.fixture(params=["text", "json"])
def service(request: pytest.FixtureRequest, settings: Settings, ecg_model_dir: Path, broken_model: str,
            tmp_path: Path) -> Iterator[tuple[str, str, Path, Path, str, subprocess.Popen[bytes], Settings]]:
    """An API (keys required) and a worker on a queue of their own, logging to files in the requested format."""
    fmt = request.param
    own = settings.model_copy(update={"queue": f"logs-{secrets.token_hex(4)}"})
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    redis = Redis.from_url(str(own.redis_url))
    with api_log.open("wb") as api_out, worker_log.open("wb") as worker_out:
        api, url = start_api(own, stderr=api_out, stdout=api_out, DSB_AUTH="required", DSB_LOG_FORMAT=fmt)
        worker = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "worker"], cwd=ROOT, stderr=worker_out,
                                  stdout=worker_out, env=environment(own, DSB_LOG_FORMAT=fmt, DSB_BATCH_SIZE="4"))
        try:
            wait_for(lambda: any(own.queue in w.queue_names() for w in Worker.all(connection=redis)), 30,
                     "the worker to register")
            yield fmt, url, api_log, worker_log, new_key(own, f"alice-{fmt}"), worker, own
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            stop(api)
            redis.close()


def _events(fmt: str, path: Path, job_id: str) -> list[dict[str, str]]:
    """The job's state changes in a process's log: parsed from JSON, or read from the text line."""
    events = []
    for line in path.read_text().splitlines():
        if fmt == "json":
            record = json.loads(line)  # every line of the process is one JSON object
            assert {"time", "level", "logger", "message"} <= record.keys(), line
            if record.get("job_id") == job_id and "state" in record:  # RQ's own lines carry job_id too
                assert record["message"].startswith(f"job {job_id} {record['state']} (owner {record['owner']}")
                events.append({"state": record["state"], "owner": record["owner"]})
        elif f"job {job_id} " in line and "(owner " in line:
            state = line.split(f"job {job_id} ", 1)[1].split(" ", 1)[0]
            owner = line.split("(owner ", 1)[1].split(";", 1)[0].rstrip(")")
            events.append({"state": state, "owner": owner})
    return events


def test_each_state_change_is_one_line_with_the_job_id_and_the_owner_name(
        service: tuple[str, str, Path, Path, str, subprocess.Popen[bytes], Settings], broken_model: str) -> None:
    fmt, url, api_log, worker_log, key, _, _ = service
    owner = f"alice-{fmt}"
    with client(url, key) as http:
        good = http.post(ECG, json={"num_samples": 6, "seed": 3, "format": "npy"}).json()["job_id"]
        bad = http.post(broken_model, json={"num_samples": 2, "seed": 3}).json()["job_id"]
        assert wait_finished(http, good)["status"] == "finished"
        assert wait_finished(http, bad)["status"] == "failed"

    wait_for(lambda: any(e["state"] == "failed" for e in _events(fmt, worker_log, bad)), 10, "the failure's line")
    for job_id in (good, bad):
        assert _events(fmt, api_log, job_id) == [{"state": "queued", "owner": owner}]
    assert _events(fmt, worker_log, good) == [{"state": "started", "owner": owner},
                                              {"state": "finished", "owner": owner}]
    # the broken model fails on each of its tries: RQ runs it again twice (the API's Retry), then it fails for good
    assert _events(fmt, worker_log, bad) == [{"state": "started", "owner": owner}, {"state": "requeued", "owner": owner}] * 2 + [
        {"state": "started", "owner": owner}, {"state": "failed", "owner": owner}]
    for log in (api_log, worker_log):
        assert key not in log.read_text()


def test_the_access_log_keeps_a_download_links_path_not_its_signature(
        service: tuple[str, str, Path, Path, str, subprocess.Popen[bytes], Settings]) -> None:
    _, url, api_log, _, key, _, _ = service
    with client(url, key) as http:
        job_id = http.post(ECG, json={"num_samples": 2, "seed": 3, "format": "npy"}).json()["job_id"]
        assert wait_finished(http, job_id)["status"] == "finished"
        link = http.post(f"/jobs/{job_id}/result/link").json()["url"]
    assert httpx.get(url + link).status_code == 200
    signature = link.rsplit(".", 1)[1]
    wait_for(lambda: f"/jobs/{job_id}/result?link=REDACTED" in api_log.read_text(), 10, "the download's access line")
    assert signature not in api_log.read_text()


def test_a_cancel_is_logged_by_the_api_and_by_the_worker_that_stops(
        service: tuple[str, str, Path, Path, str, subprocess.Popen[bytes], Settings]) -> None:
    fmt, url, api_log, worker_log, key, _, _ = service
    owner = f"alice-{fmt}"
    with client(url, key) as http:
        running = http.post(ECG, json={"num_samples": 80, "seed": 4, "format": "npy"}).json()["job_id"]
        waiting = http.post(ECG, json={"num_samples": 2, "seed": 5, "format": "npy"}).json()["job_id"]
        wait_for(lambda: http.get(f"/jobs/{running}").json()["progress"]["done"] > 0, 60, "the first job to run")
        assert http.delete(f"/jobs/{waiting}").json()["status"] == "canceled"  # never started: the API alone
        assert http.delete(f"/jobs/{running}").status_code in (200, 202)
        wait_for(lambda: http.get(f"/jobs/{running}").json()["status"] == "canceled", 30, "the cancel")

    wait_for(lambda: {"state": "canceled", "owner": owner} in _events(fmt, worker_log, running), 10,
             "the worker's line")
    assert _events(fmt, api_log, waiting) == [{"state": "queued", "owner": owner}, {"state": "canceled", "owner": owner}]
    assert _events(fmt, worker_log, waiting) == []
    assert _events(fmt, api_log, running) == [{"state": "queued", "owner": owner}, {"state": "canceled", "owner": owner}]
    assert _events(fmt, worker_log, running) == [{"state": "started", "owner": owner}, {"state": "canceled", "owner": owner}]


@pytest.mark.parametrize("service", ["text"], indirect=True)
def test_a_dead_workers_job_run_again_is_logged_as_requeued(
        service: tuple[str, str, Path, Path, str, subprocess.Popen[bytes], Settings], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The worker SIGKILLed mid-job logs nothing more; whoever sees it die (here the test, as `serve` or a worker
    pool does: `workers.recovery.worker_gone`) logs the job queued again, and the next worker runs it."""
    from workers import recovery

    fmt, url, _, worker_log, key, worker, own = service
    owner = f"alice-{fmt}"
    redis = Redis.from_url(str(own.redis_url))
    (name,) = [w.name for w in Worker.all(connection=redis) if own.queue in w.queue_names()]
    with client(url, key) as http:
        job_id = http.post(ECG, json={"num_samples": 80, "seed": 6, "format": "npy"}).json()["job_id"]
        wait_for(lambda: http.get(f"/jobs/{job_id}").json()["progress"]["done"] > 0, 60, "the job to run")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        with caplog.at_level(logging.INFO, logger="deepsynthbody.core.jobs"):
            assert recovery.worker_gone(redis, [own.queue], name=name) == [job_id]
        (line,) = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
        assert (line.state, line.owner) == ("requeued", owner) and "its worker died" in line.getMessage()
        second_log = tmp_path / "second-worker.log"
        with second_log.open("wb") as out:
            second = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "worker"], cwd=ROOT, stderr=out,
                                      stdout=out, env=environment(own, DSB_BATCH_SIZE="4"))
        try:
            assert wait_finished(http, job_id)["status"] == "finished"
        finally:
            second.terminate()
            second.wait(timeout=30)
    redis.close()
    assert _events(fmt, worker_log, job_id) == [{"state": "started", "owner": owner}]
    assert _events(fmt, second_log, job_id) == [{"state": "started", "owner": owner},
                                                {"state": "finished", "owner": owner}]


def test_models_build_logs_its_own_lines_only(tmp_path: Path) -> None:
    """Exporting with torch says what was built, in the service's format; nothing of torch's own INFO logging."""
    done = subprocess.run([sys.executable, "-m", "deepsynthbody", "models", "build"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("DSB_")} | {"DSB_DATA_DIR": str(tmp_path)},
                          timeout=300, check=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert any("model_store.build INFO built pulse2pulse-ecg:2" in line for line in lines), done.stderr
    assert all(line[:4].isdigit() and " INFO " in line for line in lines), done.stderr
