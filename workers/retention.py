"""Results are kept as long as RQ keeps their jobs: older job folders are removed from the results store."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)


def remove_expired(jobs_dir: Path, keep_seconds: float, now: float | None = None) -> list[str]:
    """Delete job folders untouched for longer than `keep_seconds`; returns the job ids removed."""
    if not jobs_dir.is_dir():
        return []
    cutoff = (now or time.time()) - keep_seconds
    removed = []
    for folder in jobs_dir.iterdir():
        try:
            newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
        except FileNotFoundError:
            continue  # removed meanwhile, by another worker's clean-up
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.info("removed %d expired job folders from %s", len(removed), jobs_dir)
    return removed
