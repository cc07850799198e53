"""`serve` when its parts die: its private Redis (a password, loopback only, every 202 on disk), a worker SIGKILLed
mid-job (replaced, the job finished again the same), Redis SIGKILLed (restarted), and a crash of everything right
after a burst of accepted requests (every one of them finishes after a restart: it was in Redis's append-only
file before its 202)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from deepsynthbody.core.embedded_redis import url_for_data_dir
from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, wait_finished, wait_for
from tests.test_serve import Serve


@pytest.fixture
def data(tmp_path: Path, settings: Settings, ecg_model_dir: Path) -> Path:
    """A data dir of its own, its models those the test session built."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(settings.installed_models_dir.resolve(), target_is_directory=True)
    return data


@pytest.fixture
def serve(data: Path) -> Iterator[Serve]:
    process = Serve(data, DSB_CHUNK_SIZE="5000").start()
    try:
        yield process.ready()
    finally:
        process.stop()


def _workers(serve: Serve) -> list[psutil.Process]:
    assert serve.process is not None
    return [p for p in psutil.Process(serve.process.pid).children() if "worker" in " ".join(p.cmdline())]


def _redis_server(serve: Serve) -> psutil.Process:
    assert serve.process is not None
    [found] = [p for p in psutil.Process(serve.process.pid).children() if "redis-server" in " ".join(p.cmdline())]
    return found


def _files(client: httpx.Client, job_id: str) -> list[dict]:
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
    assert archive.testzip() is None
    return json.loads(archive.read("manifest.json"))["files"]


def _no_zombies(serve: Serve) -> None:
    assert serve.process is not None
    children = psutil.Process(serve.process.pid).children(recursive=True)
    assert [c for c in children if c.status() == psutil.STATUS_ZOMBIE] == []


def test_the_private_redis_needs_its_password_and_listens_on_loopback_only(serve: Serve, data: Path) -> None:
    folder, password_file = data / "redis", data / "redis" / "password"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 32
    server = _redis_server(serve)
    listening = [c for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    port = listening[0].laddr.port
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).ping()  # no password: nothing
    url = url_for_data_dir(data)  # what `deepsynthbody keys --data-dir` uses
    assert url is not None and password in url
    with redis.Redis.from_url(url) as connection:
        assert connection.ping()
        assert connection.config_get("appendonly") == {"appendonly": "yes"}
    # the password is on no command line (which every local user can read) and in no log
    assert serve.process is not None
    for process in [psutil.Process(serve.process.pid), *psutil.Process(serve.process.pid).children(recursive=True)]:
        assert password not in " ".join(process.cmdline())
    assert password not in serve.out() + serve.err()
    serve.stop()
    assert url_for_data_dir(data) is None


def test_a_worker_killed_mid_job_is_replaced_and_its_job_finishes_the_same(serve: Serve) -> None:
    request = {"num_samples": 400, "seed": 21, "format": "wfdb"}
    [worker] = _workers(serve)
    with httpx.Client(base_url=serve.url, timeout=60) as client:
        job_id = client.post(ECG, json=request).json()["job_id"]
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] >= 100, 60, "the job to start")
        worker.kill()
        killed_at = time.monotonic()
        seen: list[int] = []
        while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("finished", "failed", "canceled"):
            seen.append(job["progress"]["done"])
            assert time.monotonic() - killed_at < 120, job
            time.sleep(0.05)
        recovered = time.monotonic() - killed_at
        assert job["status"] == "finished", job
        assert seen == sorted(seen), "progress went back on the retry"
        wait_for(lambda: len(_workers(serve)) == 1, 10, "a new worker")
        [replacement] = _workers(serve)
        assert replacement.pid != worker.pid
        assert replacement.children() == []  # no RQ scheduler (nor anything else) to outlive it
        _no_zombies(serve)
        again = client.post(ECG, json=request).json()["job_id"]  # the same request, without a fault
        clean = wait_finished(client, again)
        assert clean["status"] == "finished"
        assert _files(client, job_id) == _files(client, again)
    run_time = (datetime.fromisoformat(clean["ended_at"]) - datetime.fromisoformat(clean["started_at"])).total_seconds()
    print(f"\nrecovery after a worker SIGKILL: {recovered:.1f} s from the kill to the job finished; "
          f"its run without a fault {run_time:.1f} s; recovery time {recovered - run_time:.1f} s")
    assert recovered < 60 + run_time
    assert f"worker process {worker.pid} was killed by SIGKILL" in serve.err()


def test_a_killed_redis_is_restarted(serve: Serve) -> None:
    server = _redis_server(serve)
    server.kill()
    wait_for(lambda: "the private Redis is back" in serve.err(), 20, "Redis to be restarted")
    assert "the private Redis was killed by SIGKILL" in serve.err()
    assert _redis_server(serve).pid != server.pid
    _no_zombies(serve)
    with httpx.Client(base_url=serve.url, timeout=60) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "serve to be ready again")
        job_id = client.post(ECG, json={"num_samples": 3, "seed": 1, "format": "npy"}).json()["job_id"]
        assert wait_finished(client, job_id, timeout=60)["status"] == "finished"


def test_every_accepted_job_survives_a_kill_of_redis_then_of_serve(data: Path) -> None:
    serve = Serve(data).start().ready()
    try:
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            done = client.post(ECG, json={"num_samples": 4, "seed": 7, "format": "wfdb"}).json()["job_id"]
            assert wait_finished(client, done)["status"] == "finished"
            before = _files(client, done)
            accepted = []
            for seed in range(30):  # a burst: the last 202 is answered a moment before Redis dies
                response = client.post(ECG, json={"num_samples": 2, "seed": seed, "format": "npy"})
                assert response.status_code == 202, response.text
                accepted.append(response.json()["job_id"])
            _redis_server(serve).kill()
            serve.crash()  # then serve and everything else, at once
        serve = Serve(data).start().ready()
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            for job_id in accepted:
                assert wait_finished(client, job_id, timeout=120)["status"] == "finished", job_id
            assert _files(client, done) == before  # a finished result stays downloadable
    finally:
        serve.stop()


def test_sigterm_to_serve_mid_job_hands_the_job_back(data: Path) -> None:
    serve = Serve(data, DSB_CHUNK_SIZE="5000").start().ready()
    try:
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            job_id = client.post(ECG, json={"num_samples": 900, "seed": 4, "format": "npy"}).json()["job_id"]
            wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] > 0, 60, "the job to start")
        assert serve.process is not None
        os.kill(serve.process.pid, signal.SIGTERM)
        assert serve.wait() == 0
        serve = Serve(data, DSB_CHUNK_SIZE="5000").start().ready()
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            assert wait_finished(client, job_id, timeout=90)["status"] == "finished"
    finally:
        serve.stop()
