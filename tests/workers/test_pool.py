"""`deepsynthbody worker --workers N` (a worker pool, the many-machines way): a worker SIGKILLed mid-job is replaced
and its job runs again at once; SIGTERM to the pool hands the running job back to the queue."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue, Worker

from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, environment, nvidia_smi, run_api, submit, wait_finished, wait_for


@pytest.fixture
def own_queue(settings: Settings, ecg_model_dir: Path, broken_model: str) -> Iterator[tuple[Settings, httpx.Client]]:
    """The session's Redis and data dir, a queue no other worker listens on, and an API enqueueing on it."""
    mine = settings.model_copy(update={"queue": f"pool-{uuid.uuid4().hex[:8]}", "chunk_size": 5000})
    api, url = run_api(mine)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield mine, client
    finally:
        api.terminate()
        api.wait(timeout=30)


def _pool(settings: Settings, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "worker", "--workers", "2"], cwd=ROOT,
                                   env=environment(settings, DSB_BATCH_SIZE="16", **env), stdout=out, stderr=out)
    queue = Queue(settings.queue, connection=Redis.from_url(str(settings.redis_url)))
    wait_for(lambda: len(Worker.all(queue=queue)) == 2, 60, "the pool's 2 workers to register")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _files(client: httpx.Client, job_id: str) -> list[dict]:
    return json.loads(zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
                      .read("manifest.json"))["files"]


def _busy_worker(settings: Settings, pool: subprocess.Popen[bytes], job_id: str) -> psutil.Process:
    """The pool's worker process running this job."""
    redis = Redis.from_url(str(settings.redis_url))
    queue = Queue(settings.queue, connection=redis)
    [worker] = [w for w in Worker.all(queue=queue) if w.get_current_job_id() == job_id]
    assert worker.pid in [child.pid for child in psutil.Process(pool.pid).children()]
    return psutil.Process(worker.pid)


def test_a_pool_worker_killed_mid_job_is_replaced_and_the_job_finishes_the_same(
        own_queue: tuple[Settings, httpx.Client], tmp_path: Path) -> None:
    settings, client = own_queue
    log = tmp_path / "pool.log"
    pool = _pool(settings, log)
    try:
        request = {"num_samples": 300, "seed": 8, "format": "csv"}
        job_id = submit(client, request)["job_id"]
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] >= 32, 60, "the job to start")
        victim = _busy_worker(settings, pool, job_id)
        victim.kill()
        killed_at = time.monotonic()
        job = wait_finished(client, job_id, timeout=120)
        recovered = time.monotonic() - killed_at
        assert job["status"] == "finished", job
        again = wait_finished(client, submit(client, request)["job_id"])
        run_time = (datetime.fromisoformat(again["ended_at"])
                    - datetime.fromisoformat(again["started_at"])).total_seconds()
        assert recovered < 60 + run_time
        assert _files(client, job_id) == _files(client, again["job_id"])
        queue = Queue(settings.queue, connection=Redis.from_url(str(settings.redis_url)))
        assert len(Worker.all(queue=queue)) == 2  # the dead one deregistered, a new one in its place
        assert f"(pid {victim.pid}) was killed by signal 9" in log.read_text()
    finally:
        _stop(pool)


# A GPU fault as onnxruntime's CUDA provider reports one, once: the first inference call in any process of the pool
# that finds the flag file (and removes it) raises it. No GPU here: the error is what a worker sees of one.
GPU_FAULT = """
import os
import onnxruntime

_flag, _run = os.environ["DSB_TEST_GPU_FAULT"], onnxruntime.InferenceSession.run


def run(self, *args, **kwargs):
    try:
        os.remove(_flag)
    except FileNotFoundError:
        return _run(self, *args, **kwargs)
    raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered ; "
                       "GPU=0 ; expr=cudaStreamSynchronize(stream)")


onnxruntime.InferenceSession.run = run
"""


def test_a_worker_whose_gpu_fails_ends_and_its_job_runs_again_the_same(
        own_queue: tuple[Settings, httpx.Client], tmp_path: Path) -> None:
    """A CUDA context that has seen such an error fails every later call: the worker hands its job back to RQ's
    retries and ends, and the pool starts a new one in its place."""
    settings, client = own_queue
    stand_in, flag, log = tmp_path / "site", tmp_path / "gpu-fault", tmp_path / "pool.log"
    stand_in.mkdir()
    (stand_in / "sitecustomize.py").write_text(GPU_FAULT)
    request = {"num_samples": 100, "seed": 11, "format": "csv"}
    pool = _pool(settings, log, PYTHONPATH=str(stand_in), DSB_TEST_GPU_FAULT=str(flag))
    try:
        flag.touch()
        job = wait_finished(client, submit(client, request)["job_id"], timeout=120)
        assert job["status"] == "finished", job
        assert not flag.exists()  # the fault happened
        text = log.read_text()
        [failed] = re.findall(r"Worker \S+ \(pid (\d+)\): the GPU failed \(RuntimeError: \[ONNXRuntimeError\] : 1 : "
                              r"FAIL : CUDA failure 700: an illegal memory access was encountered ; GPU=0 ; "
                              r"expr=cudaStreamSynchronize\(stream\)\): job \S+ runs again, and this worker ends with "
                              r"status 75 for a new one to take its place", text)
        wait_for(lambda: f"(pid {failed}) exited with status 75; a new one starts" in log.read_text(), 30,
                 "the pool to see the worker end")
        queue = Queue(settings.queue, connection=Redis.from_url(str(settings.redis_url)))
        wait_for(lambda: len(Worker.all(queue=queue)) == 2, 60, "a new worker in its place")
        assert int(failed) not in [child.pid for child in psutil.Process(pool.pid).children()]
        again = wait_finished(client, submit(client, request)["job_id"])  # no fault: the same bytes
        assert _files(client, job["job_id"]) == _files(client, again["job_id"])
    finally:
        _stop(pool)


# onnxruntime-gpu's provider list, which names CUDA whether or not a GPU is there; no CuPy here, as in a container
# whose image lacks it.
LISTS_CUDA = """
import onnxruntime

_providers = onnxruntime.get_available_providers
onnxruntime.get_available_providers = lambda: ["CUDAExecutionProvider", *_providers()]
"""


def test_a_gpu_worker_with_no_gpu_it_can_use_says_so_as_it_starts_and_counts_its_samples_as_cpu(
        own_queue: tuple[Settings, httpx.Client], tmp_path: Path) -> None:
    settings, client = own_queue
    stand_in, log = tmp_path / "site", tmp_path / "pool.log"
    stand_in.mkdir()
    (stand_in / "sitecustomize.py").write_text(LISTS_CUDA)
    pool = _pool(settings, log, PYTHONPATH=str(stand_in))
    try:
        started = re.findall(r"Worker \S+ \(pid \d+\): a GPU worker with no GPU it can use \(CUDA_VISIBLE_DEVICES="
                             r"unset; CuPy cannot be imported \(No module named 'cupy'\): pip install -e '.\[gpu\]'\): "
                             r"its jobs will run on the CPU. Give it a GPU, or set DSB_USE_CUDA=false", log.read_text())
        assert len(started) == 2, log.read_text()  # both, before any job
        job = wait_finished(client, submit(client, {"num_samples": 20, "seed": 3, "format": "npy"})["job_id"])
        assert job["status"] == "finished" and job["execution_provider"] == "CPUExecutionProvider", job
        counted = {tuple(sorted(sample.labels.items())): sample.value
                   for family in text_string_to_metric_families(client.get("/metrics").text)
                   for sample in family.samples if sample.name == "dsb_samples_generated_total"}
        labels = {"model": job["model"]["id"], "version": str(job["model"]["version"]), "format": "npy"}
        assert counted == {tuple(sorted((labels | {"execution_provider": "CPUExecutionProvider"}).items())): 20}
    finally:
        _stop(pool)


def test_sigterm_to_a_pool_hands_its_running_job_back(own_queue: tuple[Settings, httpx.Client], tmp_path: Path) -> None:
    settings, client = own_queue
    pool = _pool(settings, tmp_path / "pool.log")
    try:
        job_id = submit(client, {"num_samples": 400, "seed": 9, "format": "npy"})["job_id"]
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] > 0, 60, "the job to start")
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=60) == 0
        assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"  # handed back, not lost nor failed
        pool = _pool(settings, tmp_path / "pool.log")
        assert wait_finished(client, job_id)["status"] == "finished"
    finally:
        _stop(pool)


def test_a_lone_worker_killed_mid_job_has_its_job_run_by_another_within_a_minute(
        own_queue: tuple[Settings, httpx.Client], tmp_path: Path) -> None:
    """No one sees it die (a worker on a machine that stopped): the other workers notice its heartbeats stopped."""
    settings, client = own_queue
    redis = Redis.from_url(str(settings.redis_url))
    queue = Queue(settings.queue, connection=redis)
    env = environment(settings, DSB_BATCH_SIZE="16")
    with (tmp_path / "workers.log").open("ab") as out:
        lone = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=out)
        wait_for(lambda: len(Worker.all(queue=queue)) == 1, 60, "the worker to register")
        other = None
        try:
            request = {"num_samples": 200, "seed": 10, "format": "json"}
            job_id = submit(client, request)["job_id"]
            wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] >= 16, 60, "the job to start")
            other = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "worker"], cwd=ROOT, env=env, stdout=out,
                                     stderr=out)
            wait_for(lambda: len(Worker.all(queue=queue)) == 2, 60, "a second worker to register")
            lone.kill()
            lone.wait()
            killed_at = time.monotonic()
            job = wait_finished(client, job_id, timeout=120)
            recovered = time.monotonic() - killed_at
            assert job["status"] == "finished", job
            again = wait_finished(client, submit(client, request)["job_id"])
            run_time = (datetime.fromisoformat(again["ended_at"])
                        - datetime.fromisoformat(again["started_at"])).total_seconds()
            print(f"\nrecovery after a lone worker's SIGKILL, noticed by another worker: {recovered:.1f} s "
                  f"(its run without a fault: {run_time:.1f} s)")
            assert recovered < 60 + run_time
            assert _files(client, job_id) == _files(client, again["job_id"])
        finally:
            for process in (lone, other):
                if process is not None:
                    _stop(process)


def test_a_pool_on_gpus_deals_them_out_and_a_new_worker_takes_the_dead_ones_gpu(settings: Settings,
                                                                                tmp_path: Path) -> None:
    """`worker --workers 3 --gpus 0,1` on a host with two GPUs (as nvidia-smi lists them: `tests.conftest.nvidia_smi`):
    each worker forked with one GPU as CUDA_VISIBLE_DEVICES (0, 1, 0), as it says in its first log line; the worker
    started in place of a killed one gets the GPU that one left."""
    mine = settings.model_copy(update={"queue": f"pool-{uuid.uuid4().hex[:8]}"})
    log = tmp_path / "pool.log"
    with log.open("ab") as out:
        pool = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "worker", "--workers", "3", "--gpus", "0,1"],
                                cwd=ROOT, env=environment(mine, PATH=nvidia_smi(tmp_path / "bin")), stdout=out,
                                stderr=out)

    def gpu_of() -> dict[int, str]:  # live worker pid: its GPU, from what each worker said
        said = dict(re.findall(r"\(pid (\d+)\): CUDA_VISIBLE_DEVICES=(\S+)", log.read_text()))
        return {int(pid): gpu for pid, gpu in said.items() if psutil.pid_exists(int(pid))}

    try:
        wait_for(lambda: len(gpu_of()) == 3, 60, "the pool's 3 workers to say their GPU")
        first = gpu_of()
        assert sorted(first.values()) == ["0", "0", "1"], first
        assert {child.pid for child in psutil.Process(pool.pid).children()} == set(first)
        [on_one] = [pid for pid, gpu in first.items() if gpu == "1"]
        psutil.Process(on_one).kill()
        wait_for(lambda: len(gpu_of()) == 3 and on_one not in gpu_of(), 60, "a worker in place of the killed one")
        [new] = set(gpu_of()) - set(first)
        assert gpu_of()[new] == "1"
    finally:
        _stop(pool)
    assert pool.returncode == 0
