"""Sample i of seed s is the same whatever the batch size or the batch it lands in."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepsynthbody.core.jobs import JobSpec
from deepsynthbody.core.settings import Settings
from model_store.manifest import NoiseInput
from workers import noise, tasks

UNIFORM = NoiseInput(name="noise", shape=[8, 5000], distribution="uniform")
NORMAL = NoiseInput(name="z", shape=[4, 6, 6], distribution="normal")


def test_noise_depends_only_on_seed_and_index() -> None:
    whole = noise.draw([UNIFORM, NORMAL], seed=3, start=0, count=10)
    for start, count in [(0, 1), (3, 4), (9, 1)]:
        part = noise.draw([UNIFORM, NORMAL], seed=3, start=start, count=count)
        for name in ("noise", "z"):
            np.testing.assert_array_equal(part[name], whole[name][start : start + count])
    other = noise.draw([UNIFORM], seed=4, start=0, count=1)
    assert not np.array_equal(other["noise"][0], whole["noise"][0])
    assert not np.array_equal(whole["noise"][0], whole["noise"][1])


def test_uniform_noise_is_in_range_and_normal_noise_is_standard() -> None:
    drawn = noise.draw([UNIFORM, NORMAL], seed=0, start=0, count=20)
    uniform = drawn["noise"]
    assert uniform.dtype == np.float32 and uniform.min() >= -1 and uniform.max() < 1
    assert abs(uniform.mean()) < 0.01 and abs(uniform.var() - 1 / 3) < 0.01
    assert abs(drawn["z"].mean()) < 0.1 and abs(drawn["z"].std() - 1) < 0.1


def _spec(job_id: str, fmt: str) -> JobSpec:
    return JobSpec(job_id=job_id, model_id="pulse2pulse-ecg", model_version=1, num_samples=9, seed=2024,
                   format=fmt, params={"leads": 12}, precision="fp32", request={}, chunks=[(0, 9)])


@pytest.mark.parametrize("fmt", ["npy", "wfdb"])
def test_batch_size_1_and_7_give_identical_files(settings: Settings, ecg_model_dir: Path, fmt: str) -> None:
    archives = []
    for batch in (1, 7):
        local = settings.model_copy(update={"batch_size": batch})
        spec = _spec(f"determinism-{fmt}-{batch}", fmt)
        tasks.run(spec, local)
        archives.append(zipfile.ZipFile(settings.jobs_dir / spec["job_id"] / "result.zip"))
    one, seven = ({n: a.read(n) for n in a.namelist() if n != "manifest.json"} for a in archives)
    assert one == seven and len(one) in (1, 18)


def test_stored_and_deflated_npy_archives_hold_the_same_array(settings: Settings, ecg_model_dir: Path) -> None:
    """Stored: the samples file is the archive (the array written behind its zip header). Deflated: the array
    is compressed into a separate archive. The member is the same .npy either way."""
    members = {}
    for compression in ("stored", "deflated"):
        spec = _spec(f"npy-{compression}", "npy")
        tasks.run(spec, settings.model_copy(update={"archive_compression": compression}))
        job = settings.jobs_dir / spec["job_id"]
        with zipfile.ZipFile(job / "result.zip") as result:
            assert result.testzip() is None
            info = result.getinfo("ecgs.npy")
            assert info.compress_type == (zipfile.ZIP_STORED if compression == "stored" else zipfile.ZIP_DEFLATED)
            members[compression] = result.read("ecgs.npy")
        assert (job / "samples.npy").samefile(job / "result.zip") == (compression == "stored")
    assert members["stored"] == members["deflated"]
    assert np.load(io.BytesIO(members["stored"])).shape == (9, 5000, 12)


@pytest.mark.parametrize("fmt", ["npy", "wfdb"])
def test_an_archive_step_run_again_after_it_finished_keeps_the_archive(settings: Settings, ecg_model_dir: Path,
                                                                       fmt: str) -> None:
    """A worker killed after the archive step wrote the archive and removed the chunks' parts, before RQ heard the
    step had finished: RQ runs the step again, which finds the archive whole and keeps it (found by the chaos test:
    it failed, the parts being gone)."""
    spec = JobSpec(job_id=f"archive-again-{fmt}", model_id="pulse2pulse-ecg", model_version=1, num_samples=6,
                   seed=5, format=fmt, params={"leads": 8}, precision="fp32", request={}, chunks=[(0, 3), (3, 3)])
    chunks = [tasks.run_chunk(spec, index, settings) for index in range(2)]
    first = tasks.assemble(spec, settings, None, chunks)
    job = settings.jobs_dir / spec["job_id"]
    written = (job / "result.zip").read_bytes()
    assert not (job / "parts").exists()
    assert tasks.assemble(spec, settings, None, chunks) == first
    assert (job / "result.zip").read_bytes() == written
