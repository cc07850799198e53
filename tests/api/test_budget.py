"""The results' disk budget (DSB_RESULTS_MAX_BYTES): each job reserves its largest possible size at submit; 507 with
the numbers when it does not fit; a cancel, a deletion and expiry give the reservation back."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
from redis import Redis

from deepsynthbody.core import quotas
from deepsynthbody.core.settings import Settings
from model_store import sizes
from model_store.store import open_store
from tests.api.test_openapi import Document
from tests.conftest import ECG, wait_finished
from tests.helpers.auth_api import start_api, stop

BODY = {"num_samples": 10, "seed": 1, "format": "npy"}


def _bound(settings: Settings, body: dict) -> int:
    manifest = open_store(settings).resolve("cardiovascular", "ecg").manifest
    return sizes.job_bound(manifest, body["format"], body["num_samples"], {"leads": 8})


def _clear(settings: Settings) -> None:
    with Redis.from_url(str(settings.redis_url)) as redis:
        redis.delete(quotas.BUDGET_JOBS, quotas.BUDGET_USED)


def test_a_job_that_does_not_fit_is_507_and_a_cancel_or_expiry_gives_room_back(settings: Settings,
                                                                               ecg_model_dir: Path) -> None:
    quiet = settings.model_copy(update={"queue": f"budget-{uuid.uuid4().hex[:8]}"})  # no worker: jobs stay queued
    each = _bound(settings, BODY)
    budget = 2 * each + each // 2
    _clear(settings)
    process, url = start_api(quiet, DSB_RESULTS_MAX_BYTES=str(budget))
    try:
        with httpx.Client(base_url=url) as http:
            doc = Document(http.get("/openapi.json").json())
            first, second = (http.post(ECG, json=BODY) for _ in range(2))
            assert (first.status_code, second.status_code) == (202, 202)
            refused = http.post(ECG, json=BODY)
            assert refused.status_code == 507, refused.text
            doc.check(ECG, refused)
            body = refused.json()
            assert body == {**body, "needed": each, "reserved": 2 * each, "budget": budget}
            assert f"{each:,} bytes" in body["message"] and f"{budget:,} bytes of DSB_RESULTS_MAX_BYTES" in body["message"]
            assert http.post(ECG, json={**BODY, "num_samples": 1}).status_code == 202  # a smaller one fits
            assert http.delete(f"/jobs/{first.json()['job_id']}").status_code == 200  # canceled: its room is back
            assert http.post(ECG, json=BODY).status_code == 202
            assert http.post(ECG, json=BODY).status_code == 507
            with Redis.from_url(str(settings.redis_url)) as redis:  # a job RQ forgot (expired) two minutes ago
                redis.delete(quotas.BUDGET_JOBS, quotas.BUDGET_USED)
                quotas.reserve_bytes(redis, uuid.uuid4().hex, budget, budget, now=time.time() - 120)
            assert http.post(ECG, json=BODY).status_code == 202
    finally:
        stop(process)
        _clear(settings)


def test_deleting_a_finished_job_frees_its_files_and_its_budget(settings: Settings,
                                                                worker: subprocess.Popen[bytes]) -> None:
    each = _bound(settings, BODY)
    _clear(settings)
    process, url = start_api(settings, DSB_RESULTS_MAX_BYTES=str(each + each // 2))
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            done = http.post(ECG, json=BODY).json()["job_id"]
            assert wait_finished(http, done)["status"] == "finished"
            folder = settings.jobs_dir / done
            on_disk = sum(f.stat().st_size for f in {p.stat().st_ino: p for p in folder.rglob("*") if p.is_file()}.values())
            assert 0 < on_disk <= each
            assert http.post(ECG, json=BODY).status_code == 507  # the finished job's files still hold the room
            deleted = http.delete(f"/jobs/{done}")
            assert deleted.status_code == 200 and deleted.json()["status"] == "finished"
            assert not folder.exists()
            assert http.get(f"/jobs/{done}/result").status_code == 404
            again = http.post(ECG, json=BODY)
            assert again.status_code == 202
            assert wait_finished(http, again.json()["job_id"])["status"] == "finished"
    finally:
        stop(process)
        _clear(settings)
