"""The contract between the API and the workers: what a job carries and where its files live."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

GENERATE_TASK = "workers.tasks.generate"  # enqueued by name: the API never imports worker code


class JobSpec(TypedDict):
    """The one argument of a generation job, serialized as JSON by RQ."""

    job_id: str
    model_id: str
    model_version: int
    num_samples: int
    seed: int
    format: str
    params: dict[str, Any]
    request: dict[str, Any]


class JobPaths:
    """Files of one job under the shared results store."""

    def __init__(self, jobs_dir: Path, job_id: str) -> None:
        self.root = jobs_dir / job_id

    @property
    def samples(self) -> Path:
        """All samples as one array (N, ...) in the output's dtype; the stream reads it as it fills."""
        return self.root / "samples.npy"

    @property
    def members(self) -> Path:
        return self.root / "members"

    @property
    def archive(self) -> Path:
        return self.root / "result.zip"

    @property
    def archive_partial(self) -> Path:
        return self.root / "result.zip.partial"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"
