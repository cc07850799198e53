"""The contract between the API and the workers: what a job carries and where its files live.

A request becomes one RQ job when it fits in one chunk (it generates, then archives). A larger one
becomes one chunk job per `chunk_size` samples, which any workers on any machines run in parallel,
plus the archive job the client sees, which RQ starts once every chunk has finished.

A filtered request (`where`) whose candidate budget is larger than one chunk is cut in candidate space: each
chunk job draws and measures its range of candidates and keeps those that match; the archive job takes the
first `num_samples` of them in candidate order and writes them (`candidate_chunks`). Sample i is the i-th
matching candidate whatever the number of chunks or workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NotRequired, TypedDict

GENERATE_TASK = "workers.tasks.generate"  # enqueued by name: the API never imports worker code
CHUNK_TASK = "workers.tasks.generate_chunk"
ARCHIVE_TASK = "workers.tasks.archive_chunks"


class JobSpec(TypedDict):
    """The first argument of every job of a request, serialized as JSON by RQ."""

    job_id: str
    model_id: str
    model_version: int
    num_samples: int
    seed: int
    format: str
    params: dict[str, Any]
    precision: str  # "fp32" (the manifest's artifact) or one of its variants
    annotate: NotRequired[bool]  # measure every sample (the manifest's `measurements`)
    where: NotRequired[dict[str, list[float | None]]]  # keep candidates whose measurements are in [min, max]
    candidate_budget: NotRequired[int]  # a filtered job fails after drawing this many candidates
    request: dict[str, Any]
    chunks: list[tuple[int, int]]  # (first sample, count) of each chunk; (first candidate, count) when cut in
    # candidate space (`candidate_chunks`)


def plan_chunks(total: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(chunk_size, total - start)) for start in range(0, total, chunk_size)]


# A filtered request's candidate budget is cut into about CANDIDATE_CHUNKS chunk jobs of at least
# MIN_CANDIDATE_CHUNK candidates and at most `chunk_size` (but never more than MAX_CANDIDATE_CHUNKS jobs): small
# enough that workers share even a small request (a later chunk learns it may stop only once the earlier ones have
# finished, so a chunk is also what a worker may search in vain), large enough that a job's cost is its candidates.
CANDIDATE_CHUNKS, MIN_CANDIDATE_CHUNK, MAX_CANDIDATE_CHUNKS = 16, 256, 64


def plan_candidate_chunks(budget: int, chunk_size: int) -> list[tuple[int, int]]:
    """(first candidate, count) of each chunk of a filtered request's candidate budget."""
    size = min(chunk_size, max(MIN_CANDIDATE_CHUNK, -(-budget // CANDIDATE_CHUNKS)))
    return plan_chunks(budget, max(size, -(-budget // MAX_CANDIDATE_CHUNKS)))


def candidate_chunks(spec: JobSpec) -> bool:
    """A filtered request cut into chunks of candidates (its archive job writes the samples)."""
    return bool(spec.get("where")) and len(spec["chunks"]) > 1


def chunk_job_id(job_id: str, index: int) -> str:
    return f"{job_id}-chunk-{index:05d}"


def chunk_job_ids(spec: JobSpec) -> list[str]:
    return [chunk_job_id(spec["job_id"], i) for i in range(len(spec["chunks"]))] if len(spec["chunks"]) > 1 else []


class JobPaths:
    """Files of one job under the shared results store."""

    def __init__(self, jobs_dir: Path, job_id: str) -> None:
        self.root = jobs_dir / job_id

    @property
    def samples(self) -> Path:
        """All samples as one .npy array (N, ...) in the output's dtype; the stream reads it as it fills. For a
        stored npy job the array sits behind a zip header and the finished file is also the archive."""
        return self.root / "samples.npy"

    @property
    def measurements(self) -> Path:
        """An annotated job's measurements, one JSON file per sample (`<index>.json`), for /stream."""
        return self.root / "measurements"

    @property
    def candidates(self) -> Path:
        """A filtered request's candidate chunks: the matching candidates each found, for its archive job."""
        return self.root / "candidates"

    @property
    def parts(self) -> Path:
        """Each chunk's zipped members, or its piece of a one-file format, joined in order into the archive."""
        return self.root / "parts"

    @property
    def archive(self) -> Path:
        return self.root / "result.zip"

    @property
    def archive_partial(self) -> Path:
        return self.root / "result.zip.partial"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"
