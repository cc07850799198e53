"""`deepsynthbody serve` as a newcomer runs it: first start, Ctrl-C, a second one by mistake, a restart with work
in flight, a cancel, timestamps.

One first start builds the models (module fixture); every other `serve` here gets a data dir of its own whose
`models/` links to those.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.conftest import ECG, ROOT, answers, free_port, wait_finished, wait_for

ENV = {k: v for k, v in os.environ.items() if not k.startswith("DSB_") and k != "REDIS_URL"}


class Serve:
    """One `deepsynthbody serve` in a session of its own (as in a terminal: Ctrl-C signals its process group),
    its output in files."""

    def __init__(self, data: Path, port: int | None = None, workers: int = 1, **env: str) -> None:
        self.data, self.port, self.workers = data, port or free_port(), workers
        self.env = ENV | env
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.children: list[psutil.Process] = []
        runs = sorted(data.parent.glob(f"{data.name}-serve-*.err"))
        self.log = data.parent / f"{data.name}-serve-{len(runs)}"

    def start(self) -> Serve:
        self.data.mkdir(parents=True, exist_ok=True)
        with open(f"{self.log}.out", "wb") as out, open(f"{self.log}.err", "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deepsynthbody", "serve", "--port", str(self.port), "--data-dir", str(self.data),
                 "--workers", str(self.workers)],
                cwd=ROOT, env=self.env, stdout=out, stderr=err, start_new_session=True)
        return self

    def ready(self, timeout: float = 60) -> Serve:
        assert self.process is not None
        wait_for(lambda: self.process.poll() is not None or answers(f"{self.url}/readyz"), timeout, "serve to be ready")
        assert self.process.poll() is None, self.err()
        self.children = psutil.Process(self.process.pid).children(recursive=True)
        return self

    def out(self) -> str:
        return Path(f"{self.log}.out").read_text()

    def err(self) -> str:
        return Path(f"{self.log}.err").read_text()

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def ctrl_c(self, timeout: float = 60) -> int:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        return self.wait(timeout)

    def crash(self) -> None:
        """The machine stops: serve and everything it started die at once, without a chance to clean up."""
        assert self.process is not None
        everyone = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        for process in everyone:
            process.kill()
        psutil.wait_procs(everyone, timeout=10)
        self.process.wait()

    def left_running(self) -> list[psutil.Process]:
        _, alive = psutil.wait_procs(self.children, timeout=10)
        return alive

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.crash()


class FirstStart:
    def __init__(self, serve: Serve, status: int, left: list[psutil.Process]) -> None:
        self.serve, self.status, self.left = serve, status, left


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstStart]:
    """`serve` on an empty data dir (it exports the models), with 2 workers; once ready, Ctrl-C."""
    serve = Serve(tmp_path_factory.mktemp("first") / "data", workers=2).start()
    try:
        serve.ready(timeout=240)
        status = serve.ctrl_c()
        yield FirstStart(serve, status, serve.left_running())
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def models(first_start: FirstStart) -> Path:
    path = first_start.serve.data / "models"
    assert (path / "cardiovascular" / "ecg" / "pulse2pulse-ecg" / "2" / "model.onnx").exists(), first_start.serve.err()
    return path


@pytest.fixture
def data(tmp_path: Path, models: Path) -> Path:
    """A data dir of its own, with the models built once."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(models, target_is_directory=True)
    return data


def test_first_start_says_where_to_go_and_nothing_else(first_start: FirstStart) -> None:
    url, out, err = first_start.serve.url, first_start.serve.out(), first_start.serve.err()
    assert f"ready at {url}" in out and f"{url}/docs" in out and f"in a browser:         {url}/ " in out
    example = re.search(r"curl -X POST (\S+) -H 'content-type: application/json' -d '(\{.*\})'", out)
    assert example and example[1] == f"{url}{ECG}" and json.loads(example[2])["format"] == "wfdb", out
    assert not [line for line in err.splitlines() if "warn" in line.lower()], err
    assert not [line for line in err.splitlines() if line.startswith(" ")], err  # no warning's source line
    for version in (1, 2):  # one line per model built
        assert len([line for line in err.splitlines() if f"built pulse2pulse-ecg:{version}" in line]) == 1, err


def test_ctrl_c_stops_everything_quietly(first_start: FirstStart) -> None:
    err = first_start.serve.err()
    assert first_start.status == 0
    assert "Traceback" not in err and " ERROR " not in err, err
    assert first_start.left == [], f"serve left {first_start.left} running"


def test_serve_starts_everything_and_cleans_up(data: Path) -> None:
    serve = Serve(data).start()
    try:
        serve.ready()
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            created = client.post(ECG, json={"num_samples": 3, "seed": 42, "format": "npy"}).json()
            assert wait_finished(client, created["job_id"])["status"] == "finished"
            archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
            assert np.load(io.BytesIO(archive.read("ecgs.npy"))).shape == (3, 5000, 8)
        assert (data / "redis" / "appendonlydir").exists() or (data / "redis" / "appendonly.aof").exists()
        names = " ".join(" ".join(c.cmdline()) for c in serve.children)
        assert "redis-server" in names and "worker" in names
        assert serve.process is not None
        serve.process.send_signal(signal.SIGTERM)
        assert serve.wait() == 0
    finally:
        serve.stop()
    assert serve.left_running() == [], f"serve left {serve.left_running()} running"
    assert "Traceback" not in serve.err(), serve.err()


def _redis_servers_of(data: Path) -> list[psutil.Process]:
    """redis-server processes working in this data dir (redis-server changes into its --dir)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = " ".join(process.info["cmdline"] or []), process.info["cwd"]
        if "redis-server" in cmdline and cwd == str((data / "redis").resolve()):
            found.append(process)
    return found


def test_a_second_serve_on_a_busy_port_or_data_dir_starts_nothing(data: Path, tmp_path: Path, models: Path) -> None:
    first = Serve(data).start()
    try:
        first.ready()
        other = tmp_path / "other"
        other.mkdir()
        (other / "models").symlink_to(models, target_is_directory=True)
        cases = [(data, first.port, ("--data-dir", "--port")),  # the same command twice
                 (data, free_port(), ("--data-dir",)),
                 (other, first.port, ("--port",))]
        for data_dir, port, advice in cases:
            second = Serve(data_dir, port=port).start()
            assert second.wait(timeout=20) != 0
            lines = second.err().strip().splitlines()
            assert len(lines) == 1 and all(flag in lines[0] for flag in advice), second.err()
            assert second.out() == ""
            assert len(_redis_servers_of(data)) == 1
        assert not (other / "redis").exists()
        with httpx.Client(base_url=first.url, timeout=30) as client:  # the first one goes on
            assert client.get("/readyz").json()["ready"] is True
            created = client.post(ECG, json={"num_samples": 2, "seed": 1, "format": "npy"}).json()
            assert wait_finished(client, created["job_id"])["status"] == "finished"
    finally:
        first.stop()


# --- work in flight: a service whose jobs take a few seconds, so they can be canceled or stopped mid-way ---


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, models: Path) -> Iterator[Serve]:
    data = tmp_path_factory.mktemp("service") / "data"
    data.mkdir()
    (data / "models").symlink_to(models, target_is_directory=True)
    serve = Serve(data, DSB_CHUNK_SIZE="1000").start()
    try:
        yield serve.ready()
    finally:
        serve.stop()


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_timestamps_one_clock_one_meaning(service: Serve) -> None:
    with httpx.Client(base_url=service.url, timeout=60) as client:
        job_id = client.post(ECG, json={"num_samples": 1100, "seed": 5, "format": "npy"}).json()["job_id"]
        seen: dict[str, set[str]] = {"created_at": set(), "started_at": set()}
        while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("finished", "failed", "canceled"):
            for key in seen:
                if job[key]:
                    seen[key].add(job[key])
            time.sleep(0.05)
        for key in seen:
            seen[key].add(job[key])
        assert job["status"] == "finished"
        archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["chunks"] == 2
    assert len(seen["created_at"]) == 1 and len(seen["started_at"]) == 1, seen  # the same in every poll
    created, started, ended = (_moment(job[key]) for key in ("created_at", "started_at", "ended_at"))
    assert created <= started <= ended
    assert created == _moment(manifest["created_at"])
    assert started == _moment(manifest["started_at"])
    assert ended == _moment(manifest["finished_at"])
    with httpx.Client(base_url=service.url, timeout=60) as client:
        assert client.get(f"/jobs/{job_id}").json() == job  # nor after the end


@pytest.mark.parametrize(("fmt", "num_samples"), [("wfdb", 900), ("npy", 900), ("wfdb", 2500), ("npy", 2500)])
def test_a_canceled_job_leaves_no_files_and_no_error(service: Serve, fmt: str, num_samples: int) -> None:
    before = len(service.err())
    with httpx.Client(base_url=service.url, timeout=60) as client:
        job_id = client.post(ECG, json={"num_samples": num_samples, "seed": 3, "format": fmt}).json()["job_id"]
        folder = service.data / "jobs" / job_id
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] > 0, 60, "the job to start")
        assert folder.exists()
        response = client.delete(f"/jobs/{job_id}")
        assert response.status_code in (200, 202) and response.json()["status"] == "canceled"
        wait_for(lambda: not folder.exists(), 5, f"the files of canceled job {job_id} to go")
        # the worker goes on
        after = client.post(ECG, json={"num_samples": 2, "seed": 1, "format": fmt}).json()["job_id"]
        assert wait_finished(client, after)["status"] == "finished"
    log = service.err()[before:]
    assert "Traceback" not in log and " ERROR " not in log, log
    assert f"{job_id}" in log and "canceled" in log  # said once, at INFO


def _files(client: httpx.Client, job_id: str) -> list[dict]:
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").content))
    assert archive.testzip() is None
    return json.loads(archive.read("manifest.json"))["files"]


def _wait_done(client: httpx.Client, job_id: str, done: int) -> None:
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["done"] >= done, 60,
             f"{done} samples of {job_id}")


def test_work_in_flight_runs_again_after_a_restart(data: Path) -> None:
    env = {"DSB_CHUNK_SIZE": "250"}
    requests = {"npy": {"num_samples": 700, "seed": 11, "format": "npy"},
                "wfdb": {"num_samples": 700, "seed": 12, "format": "wfdb"}}
    serve = Serve(data, **env).start().ready()
    try:
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            stopped = client.post(ECG, json=requests["npy"]).json()["job_id"]
            _wait_done(client, stopped, 60)
        began = time.monotonic()
        assert serve.ctrl_c() == 0  # Ctrl-C with a chunk half made
        assert time.monotonic() - began < 20
        assert "Traceback" not in serve.err(), serve.err()

        serve = Serve(data, **env).start().ready()
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            assert wait_finished(client, stopped, timeout=90)["status"] == "finished"
            crashed = client.post(ECG, json=requests["wfdb"]).json()["job_id"]
            _wait_done(client, crashed, 60)
        serve.crash()  # kill -9, everything at once

        serve = Serve(data, **env).start().ready()
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            assert wait_finished(client, crashed, timeout=90)["status"] == "finished"
            for fmt, job_id in (("npy", stopped), ("wfdb", crashed)):
                again = client.post(ECG, json=requests[fmt]).json()["job_id"]  # the same request, uninterrupted
                assert wait_finished(client, again, timeout=90)["status"] == "finished"
                assert _files(client, job_id) == _files(client, again)
    finally:
        serve.stop()
