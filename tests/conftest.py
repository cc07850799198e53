"""Real parts for integration tests: a real Redis, real worker processes, the real app over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Worker

from deepsynthbody.core.embedded_redis import EmbeddedRedis, free_port
from deepsynthbody.core.settings import Settings
from model_store.build import build
from model_store.manifest import MANIFEST_FILE
from model_store.store import open_store

ROOT = Path(__file__).resolve().parents[1]
ECG = "/generate/cardiovascular/ecg"
BROKEN_SUBCATEGORY = "test-broken-artifact"
CHUNK_SIZE = 100


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSB_REDIS_URL when set (the suite uses its own queue there), else a private redis-server."""
    url = os.environ.get("DSB_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def extra_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("extra-models")


@pytest.fixture(scope="session")
def settings(redis_url: str, data_dir: Path, extra_models: Path) -> Settings:
    # small chunks, so requests of a few hundred samples already fan out over chunk jobs
    return Settings(redis_url=redis_url, data_dir=data_dir, model_dirs=[extra_models],
                    queue=f"test-{uuid.uuid4().hex[:8]}", chunk_size=CHUNK_SIZE)


@pytest.fixture(scope="session")
def ecg_model_dir(settings: Settings) -> Path:
    """The ECG model exported by its recipe, once per session (a few seconds)."""
    build(open_store(settings))
    return open_store(settings).resolve("cardiovascular", "ecg").directory


@pytest.fixture(scope="session")
def broken_model(ecg_model_dir: Path, extra_models: Path) -> str:
    """A model whose manifest is valid but whose artifact is not the one it names: the worker must fail it."""
    manifest = json.loads((ecg_model_dir / MANIFEST_FILE).read_text())
    manifest |= {"id": "broken-artifact", "subcategory": BROKEN_SUBCATEGORY, "sha256": "0" * 64}
    target = extra_models / "cardiovascular" / BROKEN_SUBCATEGORY / "broken-artifact" / "1"
    target.mkdir(parents=True)
    shutil.copy(ecg_model_dir / "model.onnx", target / "model.onnx")
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    return f"/generate/cardiovascular/{BROKEN_SUBCATEGORY}"


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSB_") and k != "REDIS_URL"}
    env |= {
        "DSB_REDIS_URL": str(settings.redis_url),
        "DSB_DATA_DIR": str(settings.data_dir),
        "DSB_MODEL_DIRS": json.dumps([str(p) for p in settings.model_dirs]),
        "DSB_QUEUE": settings.queue,
        "DSB_CHUNK_SIZE": str(settings.chunk_size),
        "DSB_ORT_THREADS": "1",
        **extra,
    }
    return env


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def worker(settings: Settings, ecg_model_dir: Path, broken_model: str) -> Iterator[subprocess.Popen[bytes]]:
    """One real RQ worker process (`deepsynthbody worker`), batch size 7 so jobs span several batches."""
    process = start_worker(settings, batch_size=7)
    yield process
    process.terminate()
    process.wait(timeout=30)


def start_worker(settings: Settings, batch_size: int) -> subprocess.Popen[bytes]:
    redis = Redis.from_url(str(settings.redis_url))
    before = {w.name for w in Worker.all(connection=redis)}
    process = subprocess.Popen(
        [sys.executable, "-m", "deepsynthbody", "worker"], cwd=ROOT, env=environment(settings, DSB_BATCH_SIZE=str(batch_size))
    )
    wait_for(lambda: {w.name for w in Worker.all(connection=redis)} - before, 30, "the worker to register")
    return process


def run_api(settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
    """The real app under uvicorn (`deepsynthbody api`), answering on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "deepsynthbody", "api", "--port", str(port)], cwd=ROOT, env=environment(settings)
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{url}/healthz"), 30, "the API to answer")
    return process, url


def answers(url: str) -> bool:
    """The URL answers 200 (a server still starting refuses connections)."""
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
def api_url(settings: Settings, ecg_model_dir: Path, broken_model: str) -> Iterator[str]:
    process, url = run_api(settings)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def client(api_url: str, worker: subprocess.Popen[bytes]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as http:
        yield http


def submit(client: httpx.Client, body: dict, path: str = ECG) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def wait_generating(client: httpx.Client, job_id: str, timeout: float = 60) -> None:
    """Until a worker has written the job's first batch."""
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] > 0, timeout, f"job {job_id} to start")


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("finished", "failed", "canceled"):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")


TWO_GPUS = ("0, GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a", "1, GPU-8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")


def nvidia_smi(folder: Path, rows: tuple[str, ...] | None = TWO_GPUS) -> str:
    """PATH with an `nvidia-smi` first that prints `rows` as `nvidia-smi --query-gpu=index,uuid --format=csv,noheader`
    does on a host with those GPUs (None: one that fails, as without a driver). Tests of `--gpus` run on machines
    with no GPU, or another number of them: this makes the GPUs the command finds the same everywhere."""
    folder.mkdir(parents=True, exist_ok=True)
    body = "exit 9\n" if rows is None else "".join(f"echo '{row}'\n" for row in rows)
    (folder / "nvidia-smi").write_text("#!/bin/sh\n" + body)
    (folder / "nvidia-smi").chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"
