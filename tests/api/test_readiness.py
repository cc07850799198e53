"""/readyz reflects what the service can do now, and always answers quickly: a worker killed a moment ago is not
alive, a Redis that refuses writes or does not answer and a full disk are named, each in the one error shape.
A POST while Redis refuses writes is a 503 saying so, not a 500."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Queue, Worker

from deepsynthbody.core.embedded_redis import EmbeddedRedis, free_port
from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, ROOT, answers, environment, start_worker, wait_for
from workers.heartbeat import LIVE_SECONDS


def _api(settings: Settings, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "api", "--port", str(port)], cwd=ROOT,
                               env=environment(settings, **env))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: process.poll() is not None or answers(f"{url}/healthz"), 30, "the API to answer")
    assert process.poll() is None, "the API exited"
    return process, url


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _not_ready(response: httpx.Response) -> dict:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["ready"] is False and body["problems"]
    assert body["message"] == body["detail"] and body["message"].startswith("not ready: ")
    return body


@pytest.fixture
def own_queue(settings: Settings, ecg_model_dir: Path) -> Settings:
    """The suite's Redis and models, a queue no other test's worker reads."""
    return settings.model_copy(update={"queue": f"test-ready-{uuid.uuid4().hex[:8]}"})


def test_a_killed_worker_is_not_ready_within_seconds_and_a_new_one_is(own_queue: Settings) -> None:
    api, url = _api(own_queue)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            body = _not_ready(client.get("/readyz"))
            assert body["checks"]["workers"] == 0 and "no worker is alive" in body["message"]

            workers.append(start_worker(own_queue, batch_size=7))
            wait_for(lambda: client.get("/readyz").status_code == 200, 10, "/readyz to see the worker")
            assert client.get("/readyz").json()["checks"]["workers"] == 1
            redis = Redis.from_url(str(own_queue.redis_url))
            [name] = [w.name for w in Worker.all(queue=Queue(own_queue.queue, connection=redis))]

            time.sleep(LIVE_SECONDS + 1)  # RQ alone heartbeats an idle worker every 405 s
            assert client.get("/readyz").status_code == 200, "an idle worker is alive"

            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            killed = time.monotonic()
            wait_for(lambda: client.get("/readyz").status_code == 503, LIVE_SECONDS + 5, "/readyz to see the death")
            noticed = time.monotonic() - killed
            body = _not_ready(client.get("/readyz"))
            assert name in body["message"] and "silent" in body["message"], body["message"]
            assert noticed <= LIVE_SECONDS + 3, noticed

            workers.append(start_worker(own_queue, batch_size=7))
            wait_for(lambda: client.get("/readyz").status_code == 200, 10, "/readyz to see the new worker")
            assert client.get("/readyz").json()["checks"]["workers"] == 1
    finally:
        for process in workers:
            _stop(process)
        _stop(api)


def test_a_disk_below_the_free_space_threshold_is_named(own_queue: Settings) -> None:
    api, url = _api(own_queue, DSB_MIN_FREE_BYTES=str(10**18))
    try:
        body = _not_ready(httpx.get(f"{url}/readyz", timeout=10))
        assert "disk is almost full" in body["message"] and "DSB_MIN_FREE_BYTES" in body["message"]
        assert body["checks"]["disk"]["min_free_bytes"] == 10**18
        assert str(own_queue.data_dir) not in body["message"]
    finally:
        _stop(api)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def test_readyz_answers_within_seconds_when_redis_hangs(own_queue: Settings, private_redis: EmbeddedRedis) -> None:
    api, url = _api(own_queue.model_copy(update={"redis_url": private_redis.url}))
    assert private_redis.process is not None
    try:
        private_redis.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
        began = time.monotonic()
        body = _not_ready(httpx.get(f"{url}/readyz", timeout=30))
        took = time.monotonic() - began
        assert took < 6, f"/readyz took {took:.1f} s"
        assert "Redis" in body["message"], body["message"]
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
        _stop(api)


def _refusing_writes(redis: Redis, how: str, directory: Path) -> None:
    if how == "OOM":
        redis.config_set("maxmemory-policy", "noeviction")
        redis.config_set("maxmemory", 1)
    else:  # MISCONF: a snapshot that cannot be written (its file name is taken by a directory) stops writes
        (directory / "dump.rdb").mkdir()
        redis.config_set("save", "3600 1")
        redis.bgsave()
        wait_for(lambda: redis.info("persistence")["rdb_last_bgsave_status"] == "err", 10, "the snapshot to fail")


def _writable_again(redis: Redis, how: str, directory: Path) -> None:
    if how == "OOM":
        redis.config_set("maxmemory", 0)
    else:
        (directory / "dump.rdb").rmdir()
        redis.bgsave()
        wait_for(lambda: redis.info("persistence")["rdb_last_bgsave_status"] == "ok", 10, "the snapshot to succeed")


@pytest.mark.parametrize(("how", "words"), [("OOM", "out of memory"), ("MISCONF", "cannot save to its disk")])
def test_redis_refusing_writes_is_503_with_a_message_then_recovers(
        own_queue: Settings, private_redis: EmbeddedRedis, how: str, words: str) -> None:
    api, url = _api(own_queue.model_copy(update={"redis_url": private_redis.url}))
    redis = Redis.from_url(private_redis.url)
    directory = Path(redis.config_get("dir")["dir"])
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post(ECG, json={"num_samples": 1, "seed": 1}).status_code == 202
            _refusing_writes(redis, how, directory)
            refused = client.post(ECG, json={"num_samples": 1, "seed": 2})
            assert refused.status_code == 503, refused.text
            assert words in refused.json()["message"] and refused.json()["detail"] == refused.json()["message"]
            assert refused.headers["retry-after"]
            body = _not_ready(client.get("/readyz"))
            assert words in body["message"], body["message"]

            _writable_again(redis, how, directory)
            assert client.post(ECG, json={"num_samples": 1, "seed": 3}).status_code == 202
            assert "refuses writes" not in client.get("/readyz").json().get("message", "")
    finally:
        _stop(api)
