"""Streams of a job that is not ready yet: they hold no thread while they wait and nothing once their client is gone.

The API here runs on a queue of its own that no worker reads, so its job stays queued for the whole test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from deepsynthbody.core.embedded_redis import free_port
from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, ROOT, answers, environment, run_api, submit, wait_for

STREAMS = 48  # more than the thread pool's 40 threads


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _open_stream(port: int, job_id: str) -> socket.socket:
    """A client that opens the stream, reads the response head (the stream is running) and then waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /jobs/{job_id}/stream HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the API closed the stream"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def _answers_at_once(api: httpx.Client, job_id: str) -> None:
    for method, path, body, status in [("GET", f"/jobs/{job_id}", None, 200), ("GET", "/models", None, 200),
                                       ("POST", ECG, {"num_samples": 1, "seed": 2}, 202)]:
        began = time.monotonic()
        response = api.request(method, path, json=body, timeout=5)
        took = time.monotonic() - began
        assert response.status_code == status, response.text
        assert took < 1.0, f"{method} {path} took {took:.2f} s"


def test_waiting_and_hung_up_streams_cost_nothing(settings: Settings, ecg_model_dir: Path, broken_model: str) -> None:
    own = settings.model_copy(update={"queue": f"test-no-worker-{uuid.uuid4().hex[:8]}"})
    process, url = run_api(own)
    port = int(url.rsplit(":", 1)[1])
    try:
        with httpx.Client(base_url=url, timeout=10) as api:
            job_id = submit(api, {"num_samples": 5, "seed": 1, "format": "npy"})["job_id"]
            _answers_at_once(api, job_id)  # warm: the thread pool has made the threads it keeps
            threads_before = _threads(process.pid)

            clients = [_open_stream(port, job_id) for _ in range(STREAMS)]
            _answers_at_once(api, job_id)  # while they all wait
            assert _threads(process.pid) < threads_before + 8, "a waiting stream holds a thread"

            for sock in clients:
                sock.close()
            time.sleep(1.0)  # the API notices the hang-ups
            _answers_at_once(api, job_id)
            assert api.get(f"/jobs/{job_id}").json()["status"] == "queued"

            cpu = _cpu_seconds(process.pid)
            time.sleep(3.0)
            idle = _cpu_seconds(process.pid) - cpu
            assert idle < 0.3, f"the API used {idle:.2f} s of CPU in 3 s with no client: the streams still poll"
    finally:
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        try:
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    took = time.monotonic() - began
    assert took < 5.0, f"SIGTERM took {took:.1f} s to stop the API"


def test_sigterm_stops_the_api_within_its_grace_period_while_streams_are_open(settings: Settings, ecg_model_dir: Path,
                                                                                broken_model: str) -> None:
    """Clients still reading streams of a job that will not be ready for a long time do not keep the API alive."""
    own = settings.model_copy(update={"queue": f"test-no-worker-{uuid.uuid4().hex[:8]}"})
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "api", "--port", str(port)], cwd=ROOT,
                               env=environment(own, DSB_SHUTDOWN_TIMEOUT="2"))
    clients: list[socket.socket] = []
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "the API to answer")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            job_id = submit(api, {"num_samples": 5, "seed": 1, "format": "npy"})["job_id"]
        clients = [_open_stream(port, job_id) for _ in range(5)]
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        process.wait(timeout=15)
        took = time.monotonic() - began
        assert took < 2 + 3, f"SIGTERM took {took:.1f} s to stop the API"
        for sock in clients:  # each was told the response ended (or the connection closed)
            sock.settimeout(5)
            while sock.recv(4096):
                pass
    finally:
        for sock in clients:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
