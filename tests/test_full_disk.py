"""A full disk wedges nothing: `serve` on a small file system (a tmpfs, mounted for the test: needs root) whose
job fills it fails with a message and gives the space back, its worker lives on; while the disk is full `/readyz`
says why and POST answers 503 (never 500); once space is back everything works again by itself."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, wait_finished, wait_for
from tests.test_serve import Serve

DISK = "48m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {DISK} tmpfs for a full disk (root needed): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(path: Path) -> None:
    with path.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass


def test_a_full_disk_fails_the_job_and_the_service_recovers(small_disk: Path, settings: Settings,
                                                            ecg_model_dir: Path) -> None:
    data = small_disk / "data"
    data.mkdir()
    (data / "models").symlink_to(settings.installed_models_dir.resolve(), target_is_directory=True)
    serve = Serve(data, DSB_CHUNK_SIZE="5000", DSB_MIN_FREE_BYTES=str(4 << 20))
    serve.log = small_disk.parent / "serve"  # its output off the small disk
    serve.start().ready()
    try:
        assert serve.process is not None
        [worker] = [p for p in psutil.Process(serve.process.pid).children() if "worker" in " ".join(p.cmdline())]
        with httpx.Client(base_url=serve.url, timeout=60) as client:
            # 1000 ECGs as npy: 80 MB on a 48 MB disk
            job_id = client.post(ECG, json={"num_samples": 1000, "seed": 3, "format": "npy"}).json()["job_id"]
            job = wait_finished(client, job_id, timeout=120)
            assert job["status"] == "failed" and "disk filled up" in job["error"], job
            assert not (data / "jobs" / job_id).exists()  # its space given back
            assert worker.is_running() and "worker process" not in serve.err(), serve.err()[-12000:]  # it lived on

            filler = small_disk / "filler"
            _fill(filler)  # the disk full anyway (another program)
            wait_for(lambda: client.get("/readyz").status_code == 503, 10, "/readyz to say it is not ready")
            ready = client.get("/readyz").json()
            assert any("almost full" in problem for problem in ready["problems"]), ready
            statuses, accepted = [], []
            for seed in range(5):
                response = client.post(ECG, json={"num_samples": 1, "seed": seed, "format": "npy"})
                statuses.append(response.status_code)
                if response.status_code == 202:
                    accepted.append(response.json()["job_id"])
                else:
                    assert response.status_code == 503 and response.headers.get("retry-after"), response.text
            assert 503 in statuses, statuses

            filler.unlink()  # space is back: nobody restarts anything
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz to be ready again")
            accepted.append(client.post(ECG, json={"num_samples": 2, "seed": 9, "format": "wfdb"}).json()["job_id"])
            for accepted_id in accepted:
                assert wait_finished(client, accepted_id, timeout=60)["status"] == "finished", accepted_id
            assert worker.is_running(), serve.err()[-12000:]
    finally:
        serve.stop()
