"""A small Python client of the service: submit, follow, download (resumable), verify and unpack.

    from deepsynthbody.client import Client
    with Client("http://127.0.0.1:8000", api_key=None) as dsb:
        job = dsb.submit("cardiovascular/ecg", num_samples=100, seed=1, format="wfdb")
        dsb.follow(job["job_id"])                      # until it ends, from GET /jobs/{id}/events
        manifest = dsb.download(job["job_id"], "out/")  # every file checked against the manifest's sha256

A download is written to `OUT/.JOB_ID.zip.part` and resumed from its end with `Range` + `If-Range` (the
archive's ETag, kept beside it) when the connection drops or the command runs again; an archive that changed
meanwhile comes whole. Needs only httpx. Errors are `ClientError`, one sentence (the service's own `message`).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
ENDED = ("finished", "failed", "canceled")
PIECE = 1 << 20
DOWNLOAD_TRIES = 5
MANIFEST = "manifest.json"

Progress = Callable[[int, int], None]  # (done, total)


class ClientError(Exception):
    """What went wrong, in one sentence."""


class Client:
    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url = (url or os.environ.get("DSB_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get("DSB_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the service at {self.url} ({exc}); is it running (deepsynthbody serve)?") from None
        if response.status_code >= 400:
            raise ClientError(_message(response))
        return response

    # -- jobs ---------------------------------------------------------------------------------------------------

    def submit(self, model: str, **body: Any) -> dict[str, Any]:
        """POST /generate/CATEGORY/SUBCATEGORY with `body` (num_samples, seed, format, the model's parameters)."""
        category, _, subcategory = model.strip("/").partition("/")
        if not category or not subcategory or "/" in subcategory:
            raise ClientError(f"name the model as CATEGORY/SUBCATEGORY (e.g. cardiovascular/ecg), not {model!r}")
        return self._call("POST", f"/generate/{category}/{subcategory}", json=body).json()

    def job(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        params = {"wait": wait} if wait else None
        return self._call("GET", f"/jobs/{job_id}", params=params, timeout=(wait or 0) + 30).json()

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs", params={"limit": limit}).json()["jobs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/jobs/{job_id}").json()

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) from GET /jobs/{id}/events until the server closes the stream."""
        try:
            with self.http.stream("GET", f"/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=60)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_message(response))
                yield from _server_sent_events(response.iter_lines())
        except httpx.TransportError as exc:
            raise ClientError(f"lost the connection to {self.url} while following job {job_id} ({exc})") from None

    def follow(self, job_id: str, on_progress: Progress | None = None) -> dict[str, Any]:
        """The job once it has ended, reporting its progress on the way; reconnects when the stream drops."""
        for _ in range(DOWNLOAD_TRIES):
            try:
                for name, data in self.events(job_id):
                    if name in ("state", "progress", "end") and on_progress:
                        on_progress(data["progress"]["done"], data["progress"]["total"])
                    if name == "end":
                        return data
                    if name == "error":
                        raise ClientError(data["message"])
            except ClientError as exc:
                if "lost the connection" not in str(exc):
                    raise
        job = self.job(job_id)
        if job["status"] in ENDED:
            return job
        raise ClientError(f"job {job_id} is still {job['status']}; its events stream kept dropping")

    # -- the archive ----------------------------------------------------------------------------------------------

    def fetch_archive(self, job_id: str, archive: Path, on_progress: Progress | None = None,
                      on_resume: Callable[[int, int], None] | None = None) -> Path:
        """The job's archive at `archive`: written to `archive.part` first, resumed from where it stopped."""
        part, etag_file = archive.with_name(archive.name + ".part"), archive.with_name(archive.name + ".etag")
        for attempt in range(DOWNLOAD_TRIES):
            have = part.stat().st_size if part.exists() else 0
            headers = {}
            if have and etag_file.exists():
                headers = {"Range": f"bytes={have}-", "If-Range": etag_file.read_text()}
            try:
                with self.http.stream("GET", f"/jobs/{job_id}/result", headers=headers) as response:
                    if response.status_code == 416:  # the part is whole already, or longer than the archive
                        response.read()
                        part.unlink(missing_ok=True)
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise ClientError(_message(response))
                    total = _total(response)
                    if response.status_code == 206:
                        if on_resume:
                            on_resume(have, total)
                        mode = "ab"
                    else:
                        have, mode = 0, "wb"
                        if "etag" in response.headers:
                            etag_file.write_text(response.headers["etag"])
                    with part.open(mode) as out:
                        for piece in response.iter_bytes():  # as they arrive: a cut loses nothing received
                            out.write(piece)
                            have += len(piece)
                            if on_progress:
                                on_progress(have, total)
                    if have != total:
                        raise httpx.RemoteProtocolError(f"the connection closed at byte {have} of {total}")
            except httpx.TransportError as exc:
                if attempt == DOWNLOAD_TRIES - 1:
                    raise ClientError(f"the download of job {job_id} kept failing ({exc}); run the command again "
                                      f"to resume it") from None
                continue
            part.replace(archive)
            etag_file.unlink(missing_ok=True)
            return archive
        raise ClientError(f"the download of job {job_id} did not complete after {DOWNLOAD_TRIES} tries")

    def download(self, job_id: str, out: str | Path, on_progress: Progress | None = None,
                 on_resume: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Fetch the archive into `out`, check every file against its manifest's sha256, unpack it there; the
        manifest."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        archive = self.fetch_archive(job_id, out / f".{job_id}.zip", on_progress, on_resume)
        try:
            manifest = unpack(archive, out)
        except ClientError:
            archive.unlink(missing_ok=True)  # a damaged archive: the next run downloads it whole
            raise
        archive.unlink()
        return manifest


def unpack(archive: Path, out: Path) -> dict[str, Any]:
    """Every member of `archive` into `out`, each checked against the sha256 its manifest.json gives."""
    try:
        with zipfile.ZipFile(archive) as zf:
            manifest = json.loads(zf.read(MANIFEST))
            expected = {f["name"]: f["sha256"] for f in manifest["files"]}
            names = set(zf.namelist()) - {MANIFEST}
            if names != set(expected):
                raise ClientError(f"the archive's members do not match its manifest ({len(names)} members, "
                                  f"{len(expected)} in the manifest)")
            for info in zf.infolist():
                target = (out / info.filename).resolve()
                if not target.is_relative_to(out.resolve()) or info.is_dir():
                    raise ClientError(f"the archive holds an unsafe member name: {info.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                temporary = target.with_name(target.name + ".tmp")
                with zf.open(info) as src, temporary.open("wb") as dst:
                    while piece := src.read(PIECE):
                        digest.update(piece)
                        dst.write(piece)
                if info.filename != MANIFEST and digest.hexdigest() != expected[info.filename]:
                    temporary.unlink()
                    raise ClientError(f"{info.filename}: its sha256 is not the manifest's: the download is damaged; "
                                      "run the command again: it downloads it whole")
                temporary.replace(target)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ClientError(f"the downloaded archive is damaged ({exc}); run the command again: it downloads it whole") from None
    return manifest


def _total(response: httpx.Response) -> int:
    content_range = response.headers.get("content-range", "")
    if content_range.startswith("bytes ") and "/" in content_range:
        return int(content_range.rsplit("/", 1)[1])
    return int(response.headers.get("content-length", 0))


def _server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _plain(value: object) -> str:
    """{"cardiovascular": ["ecg"], "urinary": []} -> cardiovascular/ecg; [1, 2] -> 1, 2."""
    if isinstance(value, dict):
        return ", ".join(f"{key}/{sub}" for key, subs in value.items() for sub in (subs or [])) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _message(response: httpx.Response) -> str:
    """The service's own words for an error (`message`), else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        extra = "; ".join(f"{key}: {_plain(value)}" for key, value in body.items()
                          if key in ("available", "versions", "formats") and value)
        return f"{body['message']}{f' ({extra})' if extra else ''} (HTTP {response.status_code})"
    return f"HTTP {response.status_code} from {response.request.url}"


class Bar:
    """A progress bar on stderr: redrawn in place on a terminal; a line every 25 % elsewhere (logs, CI)."""

    WIDTH = 30

    def __init__(self, label: str, unit: str, stream: Any = None) -> None:  # noqa: ANN401 - a text stream
        import sys

        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.step = -1

    def __call__(self, done: int, total: int) -> None:
        percent = min(100, 100 * done // total) if total else 100
        if self.tty:
            if self.step == 100:  # drawn whole already
                return
            self.step = 100 if percent == 100 else -1
            filled = self.WIDTH * percent // 100
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3d}% "
                              f"{_amount(done, self.unit)}/{_amount(total, self.unit)}" + ("\n" if percent == 100 else ""))
        elif percent // 25 > self.step:
            self.step = percent // 25
            self.stream.write(f"{self.label}: {percent}% ({_amount(done, self.unit)} of {_amount(total, self.unit)})\n")
        self.stream.flush()


def _amount(value: int, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1e6:.1f} MB" if value >= 100_000 else f"{value} B"
    return f"{value} {unit}"
