"""Job folders go once RQ has forgotten their jobs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from workers.retention import remove_expired

DAY = 24 * 3600


def _job(jobs: Path, name: str, age: float, now: float) -> Path:
    folder = jobs / name
    (folder / "members").mkdir(parents=True)
    (folder / "result.zip").write_bytes(b"zip")
    for path in (folder / "result.zip", folder / "members", folder):
        os.utime(path, (now - age, now - age))
    return folder


def test_only_folders_older_than_the_retention_are_removed(tmp_path: Path) -> None:
    now = time.time()
    old = _job(tmp_path, "old", 8 * DAY, now)
    fresh = _job(tmp_path, "fresh", 1 * DAY, now)
    writing = _job(tmp_path, "writing", 8 * DAY, now)
    (writing / "members" / "ecg_00001.dat").write_bytes(b"new")  # still being written: recent mtime inside
    assert remove_expired(tmp_path, 7 * DAY, now=now) == ["old"]
    assert not old.exists() and fresh.exists() and writing.exists()
    assert remove_expired(tmp_path / "missing", 7 * DAY) == []
