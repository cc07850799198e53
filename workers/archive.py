"""The downloadable result: a zip of the data files plus manifest.json, renamed into place when complete.

Per-sample members are zipped by the worker that makes them, as it makes them, into its chunk's part
(`MemberZip`: a zip of that chunk's members, with their sha256 beside it). The archive then takes each
part's entries as they are, byte for byte in the kernel (`copy_file_range`), and writes one central
directory over all of them: nothing is read back through Python or compressed twice, and the archive of
a request is the same bytes whichever workers made its chunks. Members holding every sample in one file
(`.npy`, `.ndjson`) are streamed in from the chunks' pieces after those.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from deepsynthbody.jobs import JobPaths

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # data members carry no wall-clock time: same request, same bytes
_CHUNK = 1 << 20
_COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}


def _info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


class MemberZip:
    """One chunk's per-sample members, zipped as they are added; `<part>.files.json` lists their sha256."""

    def __init__(self, path: Path, compression: str) -> None:
        self.path, self.mode = path, _COMPRESSION[compression]
        self.files: list[dict[str, Any]] = []
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)  # "w": a retried chunk starts its part again

    def add(self, name: str, data: bytes) -> None:
        self.zip.writestr(_info(name, self.mode), data)
        self.files.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    def close(self) -> None:
        self.zip.close()
        listing(self.path).write_text(json.dumps(self.files))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the chunk failed or was stopped: its part is incomplete (a retry rewrites it) or already removed
            with contextlib.suppress(OSError):
                self.zip.close()


def listing(part: Path) -> Path:
    return part.with_name(f"{part.name}.files.json")


def write(paths: JobPaths, member_zips: list[Path], bundles: list[tuple[list[Path], str]], manifest: dict[str, Any],
          compression: str) -> dict[str, Any]:
    """The chunks' zipped members in chunk order, then each bundle (pieces, name), then manifest.json
    listing every member's sha256."""
    files: list[dict[str, Any]] = []
    with zipfile.ZipFile(paths.archive_partial, "w", allowZip64=True) as archive:
        for part in member_zips:
            _append_entries(archive, part)
            files += json.loads(listing(part).read_text())
        files += [_add(archive, pieces, name, _COMPRESSION[compression]) for pieces, name in bundles]
        manifest = {**manifest, "files": files}
        archive.writestr(_info("manifest.json", zipfile.ZIP_DEFLATED), json.dumps(manifest, indent=2))
    paths.manifest.write_text(json.dumps(manifest, indent=2))
    os.replace(paths.archive_partial, paths.archive)
    return manifest


def _add(archive: zipfile.ZipFile, pieces: list[Path], name: str, compression: int) -> dict[str, Any]:
    """One member whose content is `pieces` joined in order. Its sha256 runs in a thread beside the zip's
    CRC and write (both release the GIL on large blocks), so hashing adds little to the copy."""
    digest, size = hashlib.sha256(), 0
    member = archive.open(_info(name, compression), "w", force_zip64=True)
    with ThreadPoolExecutor(1, "sha256") as hashing, member as dst:
        hashed: Future[None] | None = None
        for piece in pieces:
            with piece.open("rb") as src:
                while block := src.read(_CHUNK):
                    if hashed is not None:
                        hashed.result()  # one block ahead at most, in order
                    hashed = hashing.submit(digest.update, block)
                    dst.write(block)
                    size += len(block)
        if hashed is not None:
            hashed.result()
    return {"name": name, "bytes": size, "sha256": digest.hexdigest()}


def _append_entries(archive: zipfile.ZipFile, part: Path) -> None:
    """Append the entries of the zip `part` to `archive` (open for writing) unchanged.

    A local entry does not record where it sits, so the bytes before the part's central directory move as
    they are; `archive` writes the central directory at close from the entries' infos, shifted. This uses
    ZipFile's long-standing `start_dir`/`filelist`/`NameToInfo` bookkeeping, which the standard library
    offers no public way to extend with raw entries; the tests check the result with zipfile itself."""
    with zipfile.ZipFile(part) as source:
        infos, length = source.infolist(), source.start_dir
    base = archive.start_dir
    archive.fp.flush()
    with part.open("rb") as src:
        _copy_range(src, archive.fp, length, base)
    archive.fp.seek(base + length)
    archive.start_dir = base + length
    for info in infos:
        info.header_offset += base
        archive.filelist.append(info)
        archive.NameToInfo[info.filename] = info


def _copy_range(src: Any, dst: Any, length: int, dst_offset: int) -> None:
    """`length` bytes from the start of `src` to `dst` at `dst_offset`: in the kernel where it can."""
    copied = 0
    try:
        if not hasattr(os, "copy_file_range"):
            raise OSError("no copy_file_range on this system")
        while copied < length:
            step = os.copy_file_range(src.fileno(), dst.fileno(), length - copied, copied, dst_offset + copied)
            if step == 0:
                raise OSError("copy_file_range copied nothing")
            copied += step
    except OSError:  # a file system or kernel without it: the same bytes through user space
        src.seek(copied)
        dst.seek(dst_offset + copied)
        remaining = length - copied
        while remaining:
            block = src.read(min(_CHUNK, remaining))
            dst.write(block)
            remaining -= len(block)
        dst.flush()
