"""Unpack an untrusted model archive (.zip or .tar.gz) into a fresh folder, refusing what could escape or flood it.

Nothing here trusts an archive's headers: sizes are counted as bytes are actually decompressed (a gzip stream is
capped as a whole, so even the data of skipped members counts), members are counted as they are read, and every
name is checked before anything is written. Refused, each with one message: names with `..`, absolute names,
backslashes or NUL; symbolic and hard links, device files, FIFOs and any other non-regular member; a name given
twice; more than `max_members` members; more than `max_bytes` unpacked. Files are created with O_EXCL and
O_NOFOLLOW in a folder this module made, so nothing is written outside it.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

MAX_MEMBERS = 256  # a model folder is a manifest, an artifact or two and a card
MACOS_FORKS = "__MACOSX"
CHUNK = 1 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
MEDIA_TYPES = {"application/zip": "zip", "application/gzip": "tar.gz", "application/x-gzip": "tar.gz",
               "application/x-tar+gzip": "tar.gz"}


class TooLarge(Exception):
    """The archive unpacks to more than its limit: unpacking stops at once."""


@dataclass
class Unpacked:
    """Where the model folder is (the archive's root, or its one top-level folder) and what was refused."""

    folder: Path
    problems: list[str] = field(default_factory=list)


def archive_kind(head: bytes) -> str | None:
    """`zip`, `tar.gz`, or None, from an archive's first bytes (not from what the client says it is)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "tar.gz"
    return None


def unsafe_name(name: str) -> str | None:
    """Why a member's name may not be unpacked, or None when it stays inside the folder."""
    if not name or "\x00" in name:
        return "an empty name or one with a NUL character"
    if "\\" in name:
        return "a backslash in the name (use / between folders)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute name: names must be relative to the model folder"
    if ".." in PurePosixPath(name).parts:
        return "`..` in the name: it would point outside the model folder"
    return None


class _Writer:
    """Writes members under `root`, counting every byte and member against the limits."""

    def __init__(self, root: Path, max_bytes: int, max_members: int) -> None:
        self.root, self.max_bytes, self.max_members = root, max_bytes, max_members
        self.written = 0
        self.members = 0
        self.seen: set[PurePosixPath] = set()
        self.problems: list[str] = []

    def admit(self, name: str) -> PurePosixPath | None:
        """The member's relative path, or None (with a problem said) when it must be skipped."""
        self.members += 1
        if self.members > self.max_members:
            raise TooLarge(f"the archive has more than {self.max_members} members: a model folder needs a few files")
        if why := unsafe_name(name):
            self.problems.append(f"{name[:200]!r}: {why}")
            return None
        relative = PurePosixPath(*[p for p in PurePosixPath(name).parts if p not in ("", ".")])
        if not relative.parts or relative.parts[0] == MACOS_FORKS:
            return None  # the archive's root itself ("./"); the resource forks macOS's Finder adds to a zip
        if relative in self.seen:
            self.problems.append(f"{relative}: appears twice in the archive")
            return None
        self.seen.add(relative)
        return relative

    def refuse(self, name: str, kind: str) -> None:
        self.problems.append(f"{name[:200]!r}: {kind} are not accepted: put regular files in the archive")

    def folder(self, relative: PurePosixPath) -> None:
        path = self.root
        for part in relative.parts:
            path = path / part
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                if not stat.S_ISDIR(path.lstat().st_mode):
                    raise NotADirectoryError(f"{relative}: a file of that name is already in the archive") from None

    def file(self, relative: PurePosixPath, source: IO[bytes]) -> None:
        if len(relative.parts) > 1:
            self.folder(relative.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(self.root / relative, flags, 0o644)
        except (FileExistsError, IsADirectoryError):
            self.problems.append(f"{relative}: a folder or file of that name is already in the archive")
            return
        with os.fdopen(descriptor, "wb") as out:
            while block := source.read(CHUNK):
                self.written += len(block)
                if self.written > self.max_bytes:
                    raise TooLarge(f"the archive unpacks to more than {self.max_bytes} bytes "
                                   "(DSB_MAX_UPLOAD_UNPACKED_BYTES)")
                out.write(block)


class _CappedStream:
    """A decompressed stream that fails once more than `limit` bytes came out of it (headers, skipped data and all)."""

    def __init__(self, raw: IO[bytes], limit: int, max_bytes: int) -> None:
        self.raw, self.limit, self.max_bytes, self.read_bytes = raw, limit, max_bytes, 0

    def read(self, size: int = -1) -> bytes:
        block = self.raw.read(CHUNK if size is None or size < 0 else size)
        self.read_bytes += len(block)
        if self.read_bytes > self.limit:
            raise TooLarge(f"the archive unpacks to more than {self.max_bytes} bytes (DSB_MAX_UPLOAD_UNPACKED_BYTES)")
        return block


def _unpack_tar(archive: Path, writer: _Writer) -> None:
    # headers take 512 bytes a member (long names and pax records a few more): allowed beyond the files' bytes
    limit = writer.max_bytes + (writer.max_members + 16) * 4096
    with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
        stream = _CappedStream(unzipped, limit, writer.max_bytes)
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # a stream: members are read once, in order
            for member in tar:
                relative = writer.admit(member.name)
                if relative is None:
                    continue
                if member.isdir():
                    writer.folder(relative)
                elif member.isreg():
                    source = tar.extractfile(member)
                    assert source is not None
                    writer.file(relative, source)
                elif member.issym():
                    writer.refuse(member.name, f"symbolic links (this one to {member.linkname[:200]!r})")
                elif member.islnk():
                    writer.refuse(member.name, f"hard links (this one to {member.linkname[:200]!r})")
                elif member.ischr() or member.isblk():
                    writer.refuse(member.name, "device files")
                elif member.isfifo():
                    writer.refuse(member.name, "FIFOs")
                else:
                    writer.refuse(member.name, "special members")


def _unpack_zip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zipped:
        infos = zipped.infolist()
        if len(infos) > writer.max_members:  # the central directory's count: refused before reading any of them
            raise TooLarge(f"the archive has more than {writer.max_members} members: a model folder needs a few files")
        for info in infos:
            relative = writer.admit(info.filename)
            if relative is None:
                continue
            mode = info.external_attr >> 16  # unix mode, when the archive was made on unix
            if stat.S_ISLNK(mode):
                writer.refuse(info.filename, "symbolic links")
            elif info.is_dir():
                writer.folder(relative)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # no type bits: a file (as zipfile writes them)
                writer.refuse(info.filename, "device files, FIFOs and other special members")
            else:
                with zipped.open(info) as source:  # its real bytes are counted, not the header's file_size
                    writer.file(relative, source)


def unpack(archive: Path, target: Path, max_bytes: int, max_members: int = MAX_MEMBERS) -> Unpacked:
    """Unpack `archive` into `target` (created here; it must not exist). Every unsafe member is reported and none
    written; a limit exceeded or a corrupt archive stops the unpacking with one problem. The model folder is
    `target`, or its only entry when that is a folder (`zip -r model.zip model/`; Finder's `__MACOSX/` is skipped)."""
    archive, target = Path(archive), Path(target)
    target.mkdir(mode=0o755, parents=True)
    writer = _Writer(target, max_bytes, max_members)
    with archive.open("rb") as fh:
        kind = archive_kind(fh.read(4))
    try:
        if kind == "zip":
            _unpack_zip(archive, writer)
        elif kind == "tar.gz":
            _unpack_tar(archive, writer)
        else:
            writer.problems.append("the body is not a .zip or .tar.gz archive (it does not start like one)")
    except TooLarge as exc:
        writer.problems.append(str(exc))
    except NotADirectoryError as exc:
        writer.problems.append(str(exc))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, RuntimeError, ValueError) as exc:
        # corrupt or truncated data, a bad CRC, an encrypted zip, a gzip stream that is not a tar
        writer.problems.append(f"the {kind} archive cannot be read: {' '.join(str(exc).split())[:300]}")
    entries = [e for e in target.iterdir() if e.name != ".DS_Store"]
    folder = entries[0] if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() else target
    return Unpacked(folder, writer.problems)
