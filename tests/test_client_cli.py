"""`deepsynthbody generate` and `deepsynthbody jobs` against a live service (API + worker over real HTTP).

The downloads go through a TCP proxy that really drops the connection part way through the archive: the command
resumes with a Range request, and a second run of the same command resumes the same job's download.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deepsynthbody.core.embedded_redis import free_port
from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, environment, wait_for
from tests.helpers.auth_api import new_key, start_api, stop


def deepsynthbody(settings: Settings, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepsynthbody", *args], cwd=ROOT, env=environment(settings),
                          capture_output=True, text=True, timeout=timeout)


class CuttingProxy:
    """Forwards TCP to the API; while `cut_after` is set, closes a connection once it has sent that many bytes of a
    whole-archive answer (a GET .../result without Range): an interrupted download, as a network makes it."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.cut_after: int | None = None
        self.cuts = 0
        self.server = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            state = {"armed": False, "sent": 0}
            threading.Thread(target=self._requests, args=(downstream, upstream, state), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, downstream, state), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := self._recv(src):
            text = data.decode("latin-1").lower()
            if re.search(r"get /jobs/\w+/result ", text):
                state["armed"], state["sent"] = self.cut_after is not None, 0
            if not self._send(dst, data):
                break
        self._close(src, dst)

    def _answers(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := self._recv(src):
            if state["armed"] and self.cut_after is not None and state["sent"] + len(data) > self.cut_after:
                self._send(dst, data[: self.cut_after - state["sent"]])
                self.cuts += 1
                break
            state["sent"] += len(data)
            if not self._send(dst, data):
                break
        self._close(src, dst)

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> bool:
        """False once the other direction's thread has closed the connection (the client left): nothing to send to."""
        try:
            sock.sendall(data)
        except OSError:
            return False
        return True

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def proxy(api_url: str, worker: subprocess.Popen[bytes]) -> Iterator[CuttingProxy]:
    cutting = CuttingProxy(api_url)
    yield cutting
    cutting.close()


def archive_members(api_url: str, job_id: str) -> dict[str, bytes]:
    whole = httpx.get(f"{api_url}/jobs/{job_id}/result", timeout=60)
    assert whole.status_code == 200
    with zipfile.ZipFile(io.BytesIO(whole.content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def unpacked(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_generate_follows_the_job_resumes_a_cut_download_and_unpacks_checked_files(
        settings: Settings, proxy: CuttingProxy, api_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proxy.cut_after = 300_000  # every try gets 300 kB more: five tries are not enough for the whole archive
    first = deepsynthbody(settings, "generate", "cardiovascular/ecg", "-n", "30", "--format", "wfdb", "--seed", "1",
                          "-o", str(out), "--url", proxy.url)
    assert first.returncode == 1, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("deepsynthbody generate: error: ") and "run the command again to resume" in last, first.stderr
    resumed = [int(m) for m in re.findall(r"resuming the download at byte (\d+) of", first.stderr)]
    assert len(resumed) == 4 and resumed == sorted(resumed) and resumed[0] > 0, first.stderr
    assert "generating: 100%" in first.stderr and proxy.cuts == 5
    job_id = json.loads((out / ".deepsynthbody-job.json").read_text())["job_id"]
    assert (out / f".{job_id}.zip.part").stat().st_size > resumed[-1]

    proxy.cut_after = None  # the network is back: the same command picks up where it stopped
    second = deepsynthbody(settings, "generate", "cardiovascular/ecg", "-n", "30", "--format", "wfdb", "--seed", "1",
                           "-o", str(out), "--url", proxy.url)
    assert second.returncode == 0, second.stderr
    assert f"job {job_id}: resuming the request made earlier" in second.stderr
    (at,) = re.findall(r"resuming the download at byte (\d+) of", second.stderr)
    assert int(at) > resumed[-1]
    assert "downloading: 100%" in second.stderr and "checked against the manifest's sha256" in second.stderr
    members = archive_members(api_url, job_id)
    assert unpacked(out) == members  # every file, byte for byte, and nothing left over (.part, .etag, the note)
    manifest = json.loads(members["manifest.json"])
    assert manifest["seed"] == 1 and manifest["num_samples"] == 30 and manifest["request"]["format"] == "wfdb"
    assert all(hashlib.sha256(members[f["name"]]).hexdigest() == f["sha256"] for f in manifest["files"])


def test_a_damaged_download_is_refused_and_fetched_whole_the_next_time(
        settings: Settings, api_url: str, worker: subprocess.Popen[bytes], tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = deepsynthbody(settings, "generate", "cardiovascular/ecg", "-n", "3", "--format", "npy", "--seed", "2",
                         "-o", str(out), "--url", api_url)
    assert done.returncode == 0, done.stderr
    job_id = re.search(r"job (\w+) queued", done.stderr).group(1)
    members = archive_members(api_url, job_id)
    damaged = bytearray(httpx.get(f"{api_url}/jobs/{job_id}/result").content)
    damaged[200] ^= 0xFF  # inside the first member's bytes
    etag = httpx.head(f"{api_url}/jobs/{job_id}/result").headers["etag"]
    again = tmp_path / "again"
    again.mkdir()
    (again / f".{job_id}.zip.part").write_bytes(damaged[:-10])  # all but the end: the download resumes
    (again / f".{job_id}.zip.etag").write_text(etag)
    refused = deepsynthbody(settings, "jobs", "download", job_id, "-o", str(again), "--url", api_url)
    assert refused.returncode == 1
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("deepsynthbody jobs download: error: ") and "damaged" in line, line  # its CRC-32 or sha256
    fixed = deepsynthbody(settings, "jobs", "download", job_id, "-o", str(again), "--url", api_url)
    assert fixed.returncode == 0, fixed.stderr
    assert "resuming" not in fixed.stderr and unpacked(again) == members


def test_jobs_list_show_and_cancel(settings: Settings, api_url: str, worker: subprocess.Popen[bytes]) -> None:
    submitted = httpx.post(f"{api_url}/generate/cardiovascular/ecg", json={"num_samples": 3000, "format": "npy"})
    job_id = submitted.json()["job_id"]
    listed = deepsynthbody(settings, "jobs", "list", "--url", api_url)
    assert listed.returncode == 0, listed.stderr
    row = next(line.split("\t") for line in listed.stdout.splitlines() if line.startswith(job_id))
    assert row[1] in ("queued", "started") and row[2].endswith("/3000") and row[4] == "npy"
    shown = deepsynthbody(settings, "jobs", "show", job_id, "--url", api_url)
    assert shown.returncode == 0 and json.loads(shown.stdout)["request"]["num_samples"] == 3000
    canceled = deepsynthbody(settings, "jobs", "cancel", job_id, "--url", api_url)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.strip() in (f"job {job_id}: canceled", f"job {job_id}: started")
    wait_for(lambda: httpx.get(f"{api_url}/jobs/{job_id}").json()["status"] == "canceled", 30, "the cancel")


def test_generate_sends_every_request_option(settings: Settings, api_url: str, worker: subprocess.Popen[bytes],
                                            tmp_path: Path) -> None:
    done = deepsynthbody(settings, "generate", "cardiovascular/ecg", "-n", "2", "--format", "npy", "--seed", "3",
                         "--version", "1", "--precision", "fp16", "--annotate", "--param", "leads=12",
                         "--where", "heart_rate=:200", "-o", str(tmp_path), "--url", api_url)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["request"] == {"num_samples": 2, "seed": 3, "format": "npy", "model": "pulse2pulse-ecg",
                                   "version": 1, "precision": "fp16", "annotate": True,
                                   "where": {"heart_rate": {"min": None, "max": 200.0}}, "leads": 12}
    assert manifest["model"]["precision"] == "fp16" and (tmp_path / "labels.csv").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["jobs", "show", "0123456789abcdef"], ["deepsynthbody jobs show: error: no job", "HTTP 404"]),
        (["generate", "cardiovascular/eeg", "-o", "{tmp}"], ["deepsynthbody generate: error: ", "cardiovascular/ecg"]),
        (["generate", "ecg", "-o", "{tmp}"], ["CATEGORY/SUBCATEGORY"]),
        (["generate", "cardiovascular/ecg", "--param", "leads=10", "-o", "{tmp}"], ["leads", "HTTP 422"]),
        (["generate", "cardiovascular/ecg", "--format", "mp3", "-o", "{tmp}"], ["format", "wfdb", "HTTP 422"]),
        (["generate", "cardiovascular/ecg", "-n", "10001", "-o", "{tmp}"],
         ["at most 10000 samples per request on this service", "HTTP 422"]),
        (["generate", "cardiovascular/ecg", "--where", "heart_rate=fast", "-o", "{tmp}"],
         ["--where 'heart_rate=fast': write NAME=MIN:MAX", "e.g. --where heart_rate=50:60"]),
        (["generate", "cardiovascular/ecg", "--where", "heart_rate=50", "-o", "{tmp}"], ["write NAME=MIN:MAX"]),
        (["generate", "cardiovascular/ecg", "--where", "heart_rate=inf:", "-o", "{tmp}"], ["write NAME=MIN:MAX"]),
        (["generate", "cardiovascular/ecg", "--where", "heartrate=50:60", "-o", "{tmp}"],
         ["no measurement 'heartrate' (did you mean heart_rate?)", "HTTP 422"]),
        (["generate", "cardiovascular/ecg", "--version", "7", "-o", "{tmp}"], ["installed versions: 1, 2", "HTTP 404"]),
    ],
)
def test_every_mistake_is_one_line(settings: Settings, api_url: str, tmp_path: Path, args: list[str],
                                   says: list[str]) -> None:
    done = deepsynthbody(settings, *[a.replace("{tmp}", str(tmp_path)) for a in args], "--url", api_url)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert all(s in line for s in says) and "Traceback" not in line, line


def test_an_unreachable_service_is_one_line(settings: Settings, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = deepsynthbody(settings, "generate", "cardiovascular/ecg", "-o", str(tmp_path), "--url", url)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert f"cannot reach the service at {url}" in line, line


def test_the_api_key_is_sent_and_a_missing_one_is_one_line(settings: Settings, worker: subprocess.Popen[bytes],
                                                           ecg_model_dir: Path, tmp_path: Path) -> None:
    process, url = start_api(settings, DSB_AUTH="required")
    try:
        key = new_key(settings, "cli-client")
        refused = deepsynthbody(settings, "jobs", "list", "--url", url)
        assert refused.returncode == 1 and "API key" in refused.stderr.strip().splitlines()[-1]
        done = deepsynthbody(settings, "generate", "cardiovascular/ecg", "-n", "2", "--format", "csv", "-o",
                             str(tmp_path), "--url", url, "--api-key", key)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "manifest.json").exists()
        listed = deepsynthbody(settings, "jobs", "list", "--url", url, "--api-key", key)
        assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 1
    finally:
        stop(process)
