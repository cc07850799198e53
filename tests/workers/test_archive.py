"""The archive joins the chunks' zipped members as they are: a valid zip, the same bytes however a job was split."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepsynthbody.core.jobs import JobPaths
from deepsynthbody.core.samples_file import SamplesFile
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


@pytest.mark.parametrize("compression", ["stored", "deflated"])
def test_an_interrupted_archive_step_is_redone_to_the_same_bytes(tmp_path: Path, compression: str) -> None:
    """The archive is built on the first chunk's part: doing the step again (an RQ retry) finds that part
    already extended with the other entries and a directory, and must use only its own entries."""
    first, manifest = _archive(tmp_path, [5, 9], compression, "retried")
    paths = JobPaths(tmp_path, "retried")
    parts = sorted(paths.parts.glob("*.members.zip"))
    again = archive.write(paths, parts, [([paths.parts / "00000.ndjson", paths.parts / "00001.ndjson"], "ecgs.ndjson")],
                          {"job_id": "same"}, compression)
    assert paths.archive.read_bytes() == first
    assert again == manifest


@pytest.mark.parametrize("compression", ["stored", "deflated"])
def test_an_archive_step_killed_while_it_extended_the_first_part_is_redone(tmp_path: Path, compression: str) -> None:
    """Killed while it appended to the first part (the other entries written, the directory not): that part has no
    directory at its end, so no zip reader opens it; the step done again puts back the part's own directory and
    builds the same archive (found by the chaos test: the retries failed with "File is not a zip file")."""
    first, manifest = _archive(tmp_path, [5, 9], compression, "killed")
    paths = JobPaths(tmp_path, "killed")
    parts = sorted(paths.parts.glob("*.members.zip"))
    paths.archive.unlink()  # the step was killed before it renamed the archive into place
    with parts[0].open("r+b") as part:
        part.truncate(len(first) - 200)  # the directory and the end record cut off
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(parts[0])
    again = archive.write(paths, parts, [([paths.parts / "00000.ndjson", paths.parts / "00001.ndjson"], "ecgs.ndjson")],
                          {"job_id": "same"}, compression)
    assert paths.archive.read_bytes() == first
    assert again == manifest


def _samples_archive(tmp_path: Path, job: str, rows: np.ndarray, order: list[int]) -> JobPaths:
    """An npy job's archive: its samples written behind the member's zip header, batches in `order`."""
    paths = JobPaths(tmp_path, job)
    paths.parts.mkdir(parents=True)
    samples = SamplesFile.create(paths.samples, rows.dtype, rows.shape, archive.member_header("ecgs.npy"))
    for start in order:
        samples.write(start, rows[start:start + 3])
    with archive.MemberZip(paths.parts / "00000.members.zip", "stored"):
        pass  # npy makes no per-sample members
    archive.write(paths, [paths.parts / "00000.members.zip"], [], {"job_id": "same"}, "stored",
                  (SamplesFile(paths.samples), "ecgs.npy"))
    return paths


def test_npy_samples_become_the_archive_without_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "_HASH_BLOCK", 4096)  # several blocks: the CRC and sha256 run over both buffers
    rows = np.random.default_rng(3).integers(-3000, 3000, (10, 500, 8), dtype=np.int16)
    paths = _samples_archive(tmp_path, "npy", rows, [6, 0, 9, 3])  # chunks finish in any order
    expected = io.BytesIO()
    np.save(expected, rows)
    with zipfile.ZipFile(paths.archive) as result:
        assert result.testzip() is None
        assert result.namelist() == ["ecgs.npy", "manifest.json"]
        assert result.read("ecgs.npy") == expected.getvalue()  # what np.save writes, byte for byte
        manifest = json.loads(result.read("manifest.json"))
    assert manifest["files"] == [{"name": "ecgs.npy", "bytes": len(expected.getvalue()),
                                  "sha256": hashlib.sha256(expected.getvalue()).hexdigest()}]
    assert paths.samples.samefile(paths.archive)  # one file, two names: the stream reads it, clients download it
    assert np.array_equal(SamplesFile(paths.samples).read(2, 5), rows[2:7])

    whole = paths.archive.read_bytes()
    archive.write(paths, [paths.parts / "00000.members.zip"], [], {"job_id": "same"}, "stored",
                  (SamplesFile(paths.samples), "ecgs.npy"))  # an interrupted archive step, redone
    assert paths.archive.read_bytes() == whole
    assert _samples_archive(tmp_path, "in-order", rows, [0, 3, 6, 9]).archive.read_bytes() == whole


def test_a_file_not_behind_the_named_member_header_is_refused(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path, "wrong-name")
    paths.root.mkdir()
    samples = SamplesFile.create(paths.samples, np.dtype(np.int16), (2, 4), archive.member_header("ecgs.npy"))
    for other in ("images.npy", "ecgz.npy"):  # another length, the same length
        with pytest.raises(ValueError, match=f"not behind the local header of a member named {other}"):
            archive.write(paths, [], [], {}, "stored", (samples, other))
