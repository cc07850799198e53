"""The archive joins the chunks' zipped members as they are: a valid zip, the same bytes however a job was split."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepsynthbody.jobs import JobPaths
from workers import archive

MEMBERS = [(f"ecg_{i:05d}.{suffix}", np.random.default_rng(i).integers(0, 256, 1000 + 37 * i, dtype=np.uint8).tobytes())
           for i in range(7) for suffix in ("dat", "hea")]


def _archive(tmp_path: Path, split: list[int], compression: str, job: str) -> tuple[bytes, dict]:
    """The archive of MEMBERS made by chunks that hold `split` members each, plus one two-piece bundle."""
    paths = JobPaths(tmp_path, job)
    paths.parts.mkdir(parents=True)
    parts, taken = [], 0
    for chunk, count in enumerate(split):
        part = paths.parts / f"{chunk:05d}.members.zip"
        with archive.MemberZip(part, compression) as members:
            for name, data in MEMBERS[taken:taken + count]:
                members.add(name, data)
        parts.append(part)
        taken += count
    pieces = [paths.parts / "00000.ndjson", paths.parts / "00001.ndjson"]
    pieces[0].write_bytes(b'{"index": 0}\n')
    pieces[1].write_bytes(b'{"index": 1}\n')
    manifest = archive.write(paths, parts, [(pieces, "ecgs.ndjson")], {"job_id": "same"}, compression)
    return paths.archive.read_bytes(), manifest


@pytest.mark.parametrize("compression", ["stored", "deflated"])
def test_archive_is_the_same_bytes_however_the_members_were_chunked(tmp_path: Path, compression: str) -> None:
    whole, manifest = _archive(tmp_path, [14], compression, "one")
    for split in ([5, 9], [1, 6, 7], [0, 14]):
        assert _archive(tmp_path, split, compression, f"split-{split}")[0] == whole
    with zipfile.ZipFile(tmp_path / "one" / "result.zip") as result:
        assert result.testzip() is None  # every member's CRC checks
        assert result.namelist() == [name for name, _ in MEMBERS] + ["ecgs.ndjson", "manifest.json"]
        for name, data in MEMBERS:
            assert result.read(name) == data
            assert result.getinfo(name).compress_type == archive._COMPRESSION[compression]
        assert result.read("ecgs.ndjson") == b'{"index": 0}\n{"index": 1}\n'
        assert json.loads(result.read("manifest.json")) == manifest
    listed = {entry["name"]: entry for entry in manifest["files"]}
    for name, data in [*MEMBERS, ("ecgs.ndjson", b'{"index": 0}\n{"index": 1}\n')]:
        assert listed[name] == {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_retried_chunk_replaces_its_part(tmp_path: Path) -> None:
    part = tmp_path / "00000.members.zip"
    with archive.MemberZip(part, "stored") as members:
        members.add("ecg_00000.dat", b"from the first try, which stopped")
        members.add("ecg_00001.dat", b"half")
    with archive.MemberZip(part, "stored") as members:
        members.add("ecg_00000.dat", b"from the retry")
    assert zipfile.ZipFile(part).namelist() == ["ecg_00000.dat"]
    assert [entry["name"] for entry in json.loads(archive.listing(part).read_text())] == ["ecg_00000.dat"]


def test_without_copy_file_range_the_archive_is_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole, _ = _archive(tmp_path, [5, 9], "stored", "in-kernel")

    def unsupported(*args: object) -> int:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(archive.os, "copy_file_range", unsupported)
    assert _archive(tmp_path, [5, 9], "stored", "user-space")[0] == whole


def test_a_stopped_chunk_leaves_no_listing_and_keeps_its_error(tmp_path: Path) -> None:
    part = tmp_path / "parts" / "00000.members.zip"
    part.parent.mkdir()
    with pytest.raises(KeyboardInterrupt), archive.MemberZip(part, "stored") as members:
        members.add("ecg_00000.dat", b"made before the stop")
        shutil.rmtree(part.parent)  # a canceled one-chunk job removes its folder while the chunk runs
        raise KeyboardInterrupt
    assert not part.parent.exists()
