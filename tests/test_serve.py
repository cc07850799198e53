"""`deepsynthbody serve` on a machine with no Redis configured: it starts its own, builds the model, serves."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import psutil

from tests.conftest import ECG, ROOT, answers, free_port, wait_finished, wait_for


def test_serve_starts_everything_and_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSB_") and k != "REDIS_URL"}
    port = free_port()
    data = tmp_path / "data"
    server = subprocess.Popen(
        [sys.executable, "-m", "deepsynthbody", "serve", "--port", str(port), "--data-dir", str(data), "--workers", "1"],
        cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/readyz"), 120, "serve to be ready")
        with httpx.Client(base_url=url, timeout=30) as client:
            created = client.post(ECG, json={"num_samples": 3, "seed": 42, "format": "npy"}).json()
            assert wait_finished(client, created["job_id"])["status"] == "finished"
            archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
            assert np.load(io.BytesIO(archive.read("ecgs.npy"))).shape == (3, 5000, 8)
        assert (data / "models" / "cardiovascular" / "ecg" / "pulse2pulse-ecg" / "1" / "model.onnx").exists()
        assert (data / "redis" / "appendonlydir").exists() or (data / "redis" / "appendonly.aof").exists()
        children = psutil.Process(server.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names and "worker" in names
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"serve left {alive} running"
