"""The downloadable result: a zip of the data files plus manifest.json, renamed into place when complete.

Per-sample members are zipped by the worker that makes them, as it makes them, into its chunk's part
(`MemberZip`: a zip of that chunk's members, with their sha256 beside it). The archive is built on the
first chunk's part, whose entries stay where they are; the other parts' entries are appended byte for
byte in the kernel (`copy_file_range`), and one central directory is written over all of them. Nothing is
read back through Python or compressed twice, and the archive of a request is the same bytes whichever
workers made its chunks. Members holding every sample in one file (`.ndjson`, a deflated `.npy`) are
streamed in from the chunks' pieces after those.

A stored `.npy` is not copied at all: the workers write the samples array behind a zip local header
(`member_header`), and the archive is built on that file, the header filled in (the CRC needs one read of
the array).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import orjson

from deepsynthbody.core.jobs import JobPaths
from deepsynthbody.core.samples_file import SamplesFile

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # data members carry no wall-clock time: same request, same bytes
_CHUNK = 1 << 20
_HASH_BLOCK = 4 << 20
_COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}

Placed = tuple[list[zipfile.ZipInfo], int, list[dict[str, Any]]]  # entries already in a file, where they end, listing


def _info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


class MemberZip:
    """One chunk's per-sample members, zipped as they are added; `<part>.files.json` lists their sha256, and
    `<part>.directory` keeps the part's own central directory (`restore`)."""

    def __init__(self, path: Path, compression: str) -> None:
        self.path, self.mode = path, _COMPRESSION[compression]
        self.files: list[dict[str, Any]] = []
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)  # "w": a retried chunk starts its part again

    def add(self, name: str, data: bytes) -> None:
        self.zip.writestr(_info(name, self.mode), data)
        self.files.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    def append(self, part: Path) -> None:
        """Another MemberZip's members (a piece of a batch encoded in another process, closed), after those added so
        far: its entries byte for byte (`_append_entries`), so the zip is the one `add` would have made. The part and
        its listing and directory are then removed."""
        self.files += _append_entries(self.zip, part)
        for path in (part, listing(part), directory(part)):
            path.unlink()

    def close(self) -> None:
        self.zip.close()
        listing(self.path).write_text(json.dumps(self.files))
        with self.path.open("rb") as part:  # where its entries end, then its directory and end record
            part.seek(self.zip.start_dir)
            directory(self.path).write_bytes(self.zip.start_dir.to_bytes(8, "little") + part.read())

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


def directory(part: Path) -> Path:
    return part.with_name(f"{part.name}.directory")


def restore(part: Path) -> None:
    """The part as its chunk wrote it: an archive step builds the archive on the first part, appending the other
    entries and a new directory after its own entries; killed midway, it leaves a file with no directory at its end,
    which no zip reader opens. The part's entries are untouched, so cutting what came after them and putting back
    the part's own directory makes it whole again."""
    if not directory(part).exists():  # a part made before parts kept their directory: left as it is
        return
    saved = directory(part).read_bytes()
    with part.open("r+b") as fh:
        fh.truncate(int.from_bytes(saved[:8], "little"))
        fh.seek(0, os.SEEK_END)
        fh.write(saved[8:])


def member_header(name: str) -> bytes:
    """The local header of a stored member `name` whose CRC and sizes are filled in later: the bytes a
    samples array is written behind (`deepsynthbody.core.samples_file.SamplesFile.create`). Zip64, so its length
    does not depend on the sizes."""
    info = _info(name, zipfile.ZIP_STORED)
    info.CRC = info.file_size = info.compress_size = 0
    return info.FileHeader(zip64=True)


def write(paths: JobPaths, member_zips: list[Path], bundles: list[tuple[list[Path], str]], manifest: dict[str, Any],
          compression: str, samples: tuple[SamplesFile, str] | None = None) -> dict[str, Any]:
    """The archive: `samples` (a job's array behind `member_header(name)`, and that name), then the chunks'
    zipped members in chunk order, then each bundle (pieces, name), then manifest.json listing every
    member's sha256.

    It is built on the file that already holds its first entries, which are therefore not copied: the
    samples file, or else the first chunk's part. The archive is that file under another name."""
    files: list[dict[str, Any]] = []
    if samples is not None:
        base, rest = samples[0].path, member_zips
    elif member_zips:
        base, rest = member_zips[0], member_zips[1:]
    else:
        base, rest = paths.archive_partial, []
        base.write_bytes(b"")
    with base.open("r+b") as fh:
        if samples is not None:
            first, end, files = _finish_in_place(fh, *samples)
        elif member_zips:
            first, end, files = _entries(base)
        else:
            first, end = [], 0
        fh.truncate(end)  # what an interrupted archive step had written after them
        fh.seek(end)
        with zipfile.ZipFile(fh, "w", allowZip64=True) as archive:  # starts at `end`
            for info in first:
                archive.filelist.append(info)
                archive.NameToInfo[info.filename] = info
            for part in rest:
                files += _append_entries(archive, part)
            files += [_add(archive, pieces, name, _COMPRESSION[compression]) for pieces, name in bundles]
            manifest = {**manifest, "files": files}
            text = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
            archive.writestr(_info("manifest.json", zipfile.ZIP_DEFLATED), text)
    paths.manifest.write_bytes(text)
    if base != paths.archive_partial:
        paths.archive_partial.unlink(missing_ok=True)
        os.link(base, paths.archive_partial)
    os.replace(paths.archive_partial, paths.archive)
    return manifest


def _finish_in_place(fh: Any, samples: SamplesFile, name: str) -> Placed:
    """Fill in the local header in front of `samples`: the array becomes a stored member. Its CRC and
    sha256 come from one read of it."""
    info = _info(name, zipfile.ZIP_STORED)
    info.file_size = info.compress_size = samples.end - samples.start
    info.CRC, sha256 = _digests(fh.fileno(), samples.start, info.file_size)
    info.header_offset = 0
    header = info.FileHeader(zip64=True)
    placed = os.pread(fh.fileno(), samples.start, 0)[zipfile.sizeFileHeader:]
    if len(header) != samples.start or not placed.startswith(name.encode()):
        raise ValueError(f"{samples.path} is not behind the local header of a member named {name}")
    os.pwrite(fh.fileno(), header, 0)
    return [info], samples.end, [{"name": name, "bytes": info.file_size, "sha256": sha256}]


def _entries(part: Path) -> Placed:
    """A chunk's part as its chunk wrote it (`restore`): its entries, where their bytes end, and their listing."""
    restore(part)
    with zipfile.ZipFile(part) as source:
        return source.infolist(), source.start_dir, json.loads(listing(part).read_text())


def _digests(fd: int, start: int, length: int) -> tuple[int, str]:
    """CRC-32 and sha256 of `length` bytes of `fd` from `start`: read once into two alternating buffers; the
    sha256 of one runs in a thread while the next is read and its CRC taken (both release the GIL)."""
    crc, digest = 0, hashlib.sha256()
    buffers = [bytearray(_HASH_BLOCK), bytearray(_HASH_BLOCK)]
    hashed: list[Future[None]] = []
    with ThreadPoolExecutor(1, "sha256") as hashing:
        for k, offset in enumerate(range(0, length, _HASH_BLOCK)):
            if len(hashed) >= 2:
                hashed.pop(0).result()  # the buffer about to be reused has been hashed
            block = memoryview(buffers[k % 2])[:min(_HASH_BLOCK, length - offset)]
            filled = 0
            while filled < len(block):
                read = os.preadv(fd, [block[filled:]], start + offset + filled)
                if read == 0:
                    raise OSError(f"the samples file ended {length - offset - filled} bytes early")
                filled += read
            crc = zlib.crc32(block, crc)
            hashed.append(hashing.submit(digest.update, block))
        for done in hashed:
            done.result()
    return crc, digest.hexdigest()


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


def _append_entries(archive: zipfile.ZipFile, part: Path) -> list[dict[str, Any]]:
    """Append the entries of the zip `part` to `archive` (open for writing) unchanged; their listing.

    A local entry does not record where it sits, so the bytes before the part's central directory move as
    they are; `archive` writes the central directory at close from the entries' infos, shifted. This uses
    ZipFile's long-standing `start_dir`/`filelist`/`NameToInfo` bookkeeping, which the standard library
    offers no public way to extend with raw entries; the tests check the result with zipfile itself."""
    infos, length, files = _entries(part)
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
    return files


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
