"""Chaos, bounded in time: while a batch of jobs runs under `serve` (2 workers, requests split into chunk jobs),
worker processes are SIGKILLed at random (seeded) moments and the private Redis is SIGKILLed once (serve restarts
each). Afterwards every accepted job has finished, and every archive's data files are byte for byte those of the
same request run again without a fault. Prints the figures: jobs, kills, restarts, lost."""

from __future__ import annotations

import io
import json
import random
import time
import zipfile
from pathlib import Path

import httpx
import psutil
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app.enqueue import RETRIES
from deepsynthbody.core.embedded_redis import url_for_data_dir
from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, wait_for
from tests.test_serve import Serve

SEED = 11
FORMATS = ["npy", "wfdb", "csv", "json", "asc"]
JOBS = 8  # per wave
MAX_JOBS = 4 * JOBS
MIN_KILLS = 3
SAMPLES = 100  # chunks of 50: 2 chunk jobs and an archive job per request
CHAOS_SECONDS = 25


def _children(serve: Serve, name: str) -> list[psutil.Process]:
    assert serve.process is not None
    return [p for p in psutil.Process(serve.process.pid).children() if name in " ".join(p.cmdline())]


def _data_files(client: httpx.Client, job_id: str) -> list[dict]:
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
    assert archive.testzip() is None
    return json.loads(archive.read("manifest.json"))["files"]  # every data file: name, size, sha256


def _status(client: httpx.Client, job_id: str) -> str:
    try:
        response = client.get(f"/jobs/{job_id}")
    except httpx.TransportError:
        return "unknown"
    return response.json()["status"] if response.status_code == 200 else "unknown"  # 503 while Redis restarts


def _kill_while_running_a_fresh_part(redis: Redis, pid: int) -> str | None:
    """SIGKILL the worker `pid` if it is running a part none of whose tries has failed yet; the part's id.

    The worker is frozen (SIGSTOP) while what it runs is read, so the part read is the part killed: read and killed
    apart, a worker could finish one part and start the next in between, and the next would take a death nobody
    counted. A part is killed only while it has all its retries (RETRIES = 2): with the one Redis restart, which may
    cost a part a try too, no part is tried more than 3 times, so none fails by design."""
    process = psutil.Process(pid)
    process.suspend()
    try:
        [worker] = [w for w in Worker.all(connection=redis, serializer=JSONSerializer) if w.pid == pid]
        job_id = worker.get_current_job_id()
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer) if job_id else None
        if job is not None and job.get_status() == JobStatus.STARTED and job.retries_left == RETRIES:
            process.kill()
            return job.id
    except Exception:  # noqa: BLE001 - Redis restarting, the worker not registered yet, its job gone: not this time
        pass
    process.resume()
    return None


def test_chaos_kills_lose_no_job_and_change_no_byte(tmp_path: Path, settings: Settings, ecg_model_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(settings.installed_models_dir.resolve(), target_is_directory=True)
    chaos = random.Random(SEED)
    serve = Serve(data, workers=2, DSB_CHUNK_SIZE="50").start().ready(timeout=90)
    began = time.monotonic()
    try:
        redis = Redis.from_url(url_for_data_dir(data) or "", socket_timeout=5)
        requests: list[dict] = []
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            accepted: list[str] = []

            def submit_wave() -> None:  # JOBS more requests, the next seeds
                for _ in range(JOBS):
                    i = len(requests)
                    requests.append({"num_samples": SAMPLES, "seed": 1000 + i, "format": FORMATS[i % len(FORMATS)]})
                    response = client.post(ECG, json=requests[-1])
                    assert response.status_code == 202, response.text
                    accepted.append(response.json()["job_id"])

            submit_wave()
            kills, redis_restarts = 0, 0
            redis_at = chaos.uniform(1, 4)  # seconds into the chaos
            deadline = time.monotonic() + CHAOS_SECONDS
            # the chaos lasts until it has done its faults (MIN_KILLS worker kills and one Redis restart): a machine
            # fast enough to near the end of the work first gets another wave of requests, so speed cannot starve it
            while time.monotonic() < deadline and (kills < MIN_KILLS or not redis_restarts
                                                   or not all(_status(client, j) == "finished" for j in accepted)):
                time.sleep(chaos.uniform(0.3, 1.2))
                if not redis_restarts and time.monotonic() - began > redis_at:
                    [server] = _children(serve, "redis-server")
                    server.kill()
                    redis_restarts += 1
                    wait_for(lambda: serve.err().count("the private Redis is back") == 1, 20, "Redis to be back")
                    continue
                workers = sorted(p.pid for p in _children(serve, "worker"))
                if workers:
                    kills += _kill_while_running_a_fresh_part(redis, chaos.choice(workers)) is not None
                if (kills < MIN_KILLS or not redis_restarts) and len(requests) < MAX_JOBS \
                        and sum(_status(client, j) not in ("finished", "failed") for j in accepted) < 2:
                    submit_wave()  # the work is nearly done and the faults are not: more work
            finished_by = time.monotonic() + 90
            statuses = {}
            for job_id in accepted:
                wait_for(lambda j=job_id: _status(client, j) in ("finished", "failed", "canceled"),
                         max(1.0, finished_by - time.monotonic()), f"job {job_id} to end")
                statuses[job_id] = _status(client, job_id)
            chaos_seconds = time.monotonic() - began
            # the same requests again, without a fault: the reference bytes
            again = [client.post(ECG, json=request).json()["job_id"] for request in requests]
            for job_id in again:
                wait_for(lambda j=job_id: _status(client, j) == "finished", 90, f"reference job {job_id}")
            lost = [j for j in accepted if statuses[j] != "finished"]
            client_views = {j: client.get(f"/jobs/{j}").json() for j in lost}
            differ = [j for j, ref in zip(accepted, again)
                      if j not in lost and _data_files(client, j) != _data_files(client, ref)]
        print(f"\nchaos: {len(requests)} jobs of {SAMPLES} samples (2 chunks + archive each, 2 workers), {kills} worker "
              f"SIGKILLs, {redis_restarts} Redis SIGKILL+restart, {serve.err().count('a new worker starts')} workers "
              f"restarted, in {chaos_seconds:.1f} s; lost: {len(lost)}, archives differing: {len(differ)}")
        assert kills >= MIN_KILLS, "the chaos killed too few workers to mean anything"
        assert redis_restarts == 1
        for job_id in lost:  # why each was lost: its view, and what the service logged of it and of its parts
            print(f"lost {job_id}: {json.dumps(client_views[job_id])}")
            print("\n".join(line for line in serve.err().splitlines() if job_id[:8] in line))
        assert lost == []
        assert differ == []
    finally:
        serve.stop()
    assert serve.left_running() == []
