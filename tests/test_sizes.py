"""The size bound the disk budget reserves holds for real archives of every format, and is not far above them."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from deepsynthbody.core.jobs import JobPaths
from deepsynthbody.core.settings import Settings
from model_store import sizes
from model_store.store import open_store
from tests.conftest import ECG, submit, wait_finished

GI_TRACT = "/generate/digestive/gi-tract"
CASES = [(ECG, fmt, {"leads": leads}) for fmt in ("wfdb", "csv", "asc", "npy", "json", "edf", "dicom")
         for leads in (8, 12)] + [(ECG, fmt, {"leads": 8}) for fmt in ("pdf", "png")] + [
    (GI_TRACT, fmt, {}) for fmt in ("png", "npy", "json")]


@pytest.mark.parametrize(("path", "fmt", "params"), CASES, ids=[f"{p.rsplit('/', 1)[1]}-{f}-{'-'.join(map(str, x.values()))}" for p, f, x in CASES])
def test_real_archives_stay_under_their_bound(client: httpx.Client, settings: Settings, worker: subprocess.Popen[bytes],
                                              path: str, fmt: str, params: dict) -> None:
    count = 12
    job = submit(client, {"num_samples": count, "seed": 3, "format": fmt, **params}, path=path)
    assert wait_finished(client, job["job_id"])["status"] == "finished"
    category, subcategory = path.split("/")[2:]
    manifest = open_store(settings).resolve(category, subcategory).manifest
    root = JobPaths(settings.jobs_dir, job["job_id"]).root
    archive = (root / "result.zip").stat().st_size
    on_disk = sum(p.stat().st_size for p in {f.stat().st_ino: f for f in root.rglob("*") if f.is_file()}.values())
    bound = sizes.archive_bound(manifest, fmt, count, params)
    assert archive <= bound, (archive, bound)
    assert on_disk <= sizes.job_bound(manifest, fmt, count, params), (on_disk, sizes.job_bound(manifest, fmt, count, params))
    # text: values are shorter than "-32768" on average; PNG: the bound is raw pixels, real images compress
    # ECG printouts: the bound is the largest page the writer lets out, real pages are 70-120 KB
    slack = 8 if path == ECG and fmt in ("pdf", "png") else 2.5 if fmt in ("csv", "asc", "json", "png") else 1.25
    assert bound <= slack * archive + sizes.MANIFEST + 64 * 1024, (archive, bound)
    assert sizes.archive_bound(manifest, fmt, count, params, deflated=True) >= bound
