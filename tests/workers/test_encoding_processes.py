"""Per-record formats encoded in the worker's processes (a GPU worker's default) make the archive the encoder thread
alone makes, byte for byte: each piece's zip entries are appended to the chunk's as they are."""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest

from deepsynthbody.core.jobs import JobSpec
from deepsynthbody.core.settings import Settings, usable_cores
from workers import encoding_processes, measuring_processes, tasks
from workers.encoding_processes import _encode

PIECES = encoding_processes.PIECES_SUFFIX
pytestmark = pytest.mark.skipif(not measuring_processes.available(), reason="this platform cannot fork")


def _archive(settings: Settings, name: str, fmt: str, processes: int | None, annotate: bool,
             chunks: list[tuple[int, int]]) -> bytes:
    spec = JobSpec(job_id=f"encoding-{name}-{processes}", model_id="pulse2pulse-ecg", model_version=1,
                   num_samples=sum(count for _, count in chunks), seed=31, format=fmt, params={"leads": 12}, precision="fp32", request={},
                   chunks=chunks, annotate=annotate)
    local = settings.model_copy(update={"encoding_processes": processes, "batch_size": 4})
    done = [tasks.run_chunk(spec, index, local) for index in range(len(chunks))]
    folders = sorted(p.name for p in (settings.jobs_dir / spec["job_id"] / "parts").glob(f"*{PIECES}"))
    assert folders == ([f"{i:05d}{PIECES}" for i in range(len(chunks))] if processes else [])  # pieces made, taken
    assert not any(list(f.iterdir()) for f in (settings.jobs_dir / spec["job_id"] / "parts").glob(f"*{PIECES}"))
    tasks.assemble(spec, local, None, done)
    return (settings.jobs_dir / spec["job_id"] / "result.zip").read_bytes()


def _without_manifest(data: bytes, path: Path) -> tuple[list[zipfile.ZipInfo], dict[str, bytes], list[dict]]:
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        files = json.loads(archive.read("manifest.json"))["files"]
        members = {n: archive.read(n) for n in archive.namelist() if n != "manifest.json"}
        return [i.filename for i in archive.infolist()], members, files


@pytest.mark.parametrize(("fmt", "annotate"), [("wfdb", False), ("wfdb", True), ("csv", False), ("asc", False),
                                               ("edf", True), ("dicom", True), ("pdf", True), ("png", False)])
def test_an_archive_encoded_in_processes_is_the_encoder_threads(settings: Settings, ecg_model_dir: Path,
                                                               tmp_path: Path, fmt: str, annotate: bool) -> None:
    chunks = [(0, 5), (5, 6)] if fmt in ("pdf", "png") else [(0, 9), (9, 10)]  # (first, count); pieces of 1-2
    name = f"{fmt}-{annotate}"
    alone = _archive(settings, name, fmt, 0, annotate, chunks)
    pieces = _archive(settings, name, fmt, 3, annotate, chunks)
    order, members, files = _without_manifest(alone, tmp_path / "alone.zip")
    assert _without_manifest(pieces, tmp_path / "pieces.zip") == (order, members, files)
    assert len(members) >= (2 if fmt == "wfdb" else 1) * sum(count for _, count in chunks)
    # every entry up to manifest.json, local headers included, at the same offsets: the same bytes
    manifest_at = zipfile.ZipFile(tmp_path / "alone.zip").getinfo("manifest.json").header_offset
    assert pieces[:manifest_at] == alone[:manifest_at]
    assert not list((settings.jobs_dir / f"encoding-{name}-3").glob("parts"))  # scratch removed with the parts


def test_what_a_stopped_try_left_in_its_pieces_folder_is_not_archived(settings: Settings, ecg_model_dir: Path,
                                                                        tmp_path: Path) -> None:
    spec = JobSpec(job_id="encoding-leftover", model_id="pulse2pulse-ecg", model_version=1, num_samples=6, seed=31,
                   format="csv", params={"leads": 8}, precision="fp32", request={}, chunks=[(0, 6)])
    local = settings.model_copy(update={"encoding_processes": 2, "batch_size": 4})
    pieces = settings.jobs_dir / spec["job_id"] / "parts" / f"00000{encoding_processes.PIECES_SUFFIX}"
    pieces.mkdir(parents=True)
    (pieces / "000000000004.zip").write_bytes(b"half a piece of a killed try")
    tasks.assemble(spec, local, None, [tasks.run_chunk(spec, 0, local)])
    with zipfile.ZipFile(settings.jobs_dir / spec["job_id"] / "result.zip") as archive:
        assert archive.namelist() == [*(f"ecg_{i:05d}.csv" for i in range(6)), "manifest.json"]


def test_who_encodes_in_processes(settings: Settings) -> None:
    unset = settings.model_copy(update={"encoding_processes": None, "ort_threads": 0})
    assert encoding_processes.processes(unset, "CPUExecutionProvider", "wfdb") == 0  # its cores infer
    cores = usable_cores()
    assert encoding_processes.processes(unset, "CUDAExecutionProvider", "wfdb") == (cores if cores > 1 else 0)
    assert encoding_processes.processes(unset, "CUDAExecutionProvider", "npy") == 0  # one file per chunk
    assert encoding_processes.processes(unset, "CUDAExecutionProvider", "json") == 0  # 5,000 ECG/s on one core
    three_workers_on_6_cores = unset.model_copy(update={"ort_threads": 2})  # what serve sets
    assert encoding_processes.processes(three_workers_on_6_cores, "CUDAExecutionProvider", "dicom") == 2
    four = settings.model_copy(update={"encoding_processes": 4})
    assert encoding_processes.processes(four, "CPUExecutionProvider", "csv") == 4
    assert encoding_processes.processes(settings.model_copy(update={"encoding_processes": 1}),
                                        "CUDAExecutionProvider", "csv") == 0


def _dies_on_its_second_batch(samples: np.ndarray, first: int, start: int, *rest: object) -> str:
    if start >= 4:
        os._exit(1)  # an encoding process killed (out of memory, say) in the middle of a chunk
    return _encode(samples, first, start, *rest)  # type: ignore[arg-type]


def test_a_chunk_whose_encoding_process_dies_fails_and_its_retry_makes_the_same_archive(
        settings: Settings, ecg_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RQ runs a failed chunk again: the new try forks new processes and writes the chunk again from its start."""
    chunks = [(0, 6), (6, 3)]
    expected = _archive(settings, "dies", "wfdb", 0, False, chunks)
    spec = JobSpec(job_id="encoding-dies-again", model_id="pulse2pulse-ecg", model_version=1, num_samples=9, seed=31,
                   format="wfdb", params={"leads": 12}, precision="fp32", request={}, chunks=chunks)
    local = settings.model_copy(update={"encoding_processes": 2, "batch_size": 4})
    measuring_processes.stop()
    monkeypatch.setattr(encoding_processes, "_encode", _dies_on_its_second_batch)  # in the processes forked next
    with pytest.raises(BrokenProcessPool):
        tasks.run_chunk(spec, 0, local)
    monkeypatch.undo()
    measuring_processes.stop()
    done = [tasks.run_chunk(spec, index, local) for index in range(len(chunks))]
    tasks.assemble(spec, local, None, done)
    made = (settings.jobs_dir / spec["job_id"] / "result.zip").read_bytes()
    manifest_at = zipfile.ZipFile(settings.jobs_dir / spec["job_id"] / "result.zip").getinfo("manifest.json")
    assert made[:manifest_at.header_offset] == expected[:manifest_at.header_offset]
