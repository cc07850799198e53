"""Typed settings, read once from the environment (prefix DSB_) by the API, the workers and the CLI."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DSB_", extra="ignore")

    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DSB_REDIS_URL", "REDIS_URL"),
        description="Redis to queue jobs in. Unset: `deepsynthbody serve` starts a private one.",
    )
    data_dir: Path = Field(Path("data"), description="Results, built models and the private Redis live here.")
    model_dirs: list[Path] = Field(
        default_factory=list, description="Extra model-store roots to read (JSON list), after the data dir's."
    )
    max_samples: PositiveInt = Field(10_000, description="Largest `num_samples` one request may ask for.")
    batch_size: PositiveInt | None = Field(None, description="Samples per inference call; unset: 32 on CPU, 1024 on CUDA.")
    use_cuda: bool = Field(True, description="Use the CUDA execution provider when onnxruntime-gpu finds a GPU.")
    cuda_tf32: bool = Field(
        False,
        description="Let the CUDA provider use TF32 matrix units: about 1.7x faster on an H100, but samples differ "
        "from fp32 by up to ~190 uV (measured by `deepsynthbody bench-gpu`); job manifests say `arithmetic: tf32`.",
    )
    ort_threads: int = Field(
        0, ge=0, description="CPU threads a worker infers with: that many single-threaded onnxruntime runs side by "
        "side, each on its own batch (and as many processes measuring an annotated job's samples); 0: one per core "
        "this process may run on (its CPU affinity, a container's cpuset or taskset, and its CPU quota, "
        "a container's `--cpus` or CPU limit, rounded up)."
    )
    encoding_processes: int | None = Field(
        None, ge=0, description="Processes a worker encodes per-record formats in (wfdb, csv, asc, edf, dicom, png, "
        "pdf), each batch cut into one piece per process; 0 or 1: its encoder thread alone; unset: on a GPU worker as "
        "many as it measures in (`ort_threads`; one per core), since the GPU makes samples faster than one core encodes "
        "them; none on a CPU worker, whose cores infer."
    )
    chunk_size: PositiveInt = Field(
        2000, description="Requests larger than this are split into chunks that workers run in parallel."
    )
    queue: str = Field("generate", description="RQ queue the API enqueues generation jobs on.")
    job_timeout: PositiveInt = Field(6 * 3600, description="Seconds a job may run before RQ fails it.")
    result_ttl: PositiveInt = Field(7 * 24 * 3600, description="Seconds RQ keeps a finished or failed job.")
    archive_compression: Literal["stored", "deflated"] = Field(
        "stored", description="Zip members stored (fast) or deflated (smaller, slower)."
    )

    # identities and limits (deepsynthbody/core/keys.py, deepsynthbody/core/quotas.py, app/auth.py, app/middleware.py)
    auth: Literal["required", "off"] | None = Field(
        None, description="API keys required (`required`) or not (`off`); unset: `off` when the API listens on a "
        "loopback address, `required` otherwise (resolved by `serve` and `api`; a bare app requires them).")
    default_samples_per_day: PositiveInt | None = Field(
        None, description="Samples per UTC day of a key created without its own limit (and of every request when "
        "auth is off); unset: unlimited.")
    default_max_active_jobs: PositiveInt | None = Field(
        None, description="Queued + running requests of a key created without its own limit; unset: unlimited.")
    rate_limit_per_second: PositiveInt | None = Field(
        None, description="Requests per second one key may make (429 beyond); unset: unlimited.")
    download_link_seconds: PositiveInt = Field(
        900, description="How long a download link (POST /jobs/{id}/result/link) opens its archive without a key.")
    max_body_bytes: PositiveInt = Field(64 * 1024, description="Largest request body accepted (413 beyond).")
    max_upload_bytes: PositiveInt = Field(
        256 << 20, description="Largest model archive POST /models accepts (413 beyond); the only route exempt from "
        "DSB_MAX_BODY_BYTES.")
    max_upload_unpacked_bytes: PositiveInt = Field(
        1 << 30, description="Most bytes a model archive may unpack to, counted while it is unpacked (a "
        "decompression bomb is refused with 422, whatever its headers say).")
    body_timeout: float = Field(
        30.0, gt=0, description="Seconds a request body may go without sending anything (408 beyond).")
    results_max_bytes: PositiveInt | None = Field(
        None, description="Disk budget of the results: each job reserves its largest possible size at submit "
        "(model_store/sizes.py) and is refused with 507 when it does not fit; unset: unlimited.")

    # observability (deepsynthbody/core/logs.py, app/metrics.py)
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as plain text, or one JSON object per line (time, level, logger, message, "
        "and fields such as job_id, owner, state) in every process.")

    # readiness (app/routes/health.py)
    min_free_bytes: int = Field(
        1 << 30, ge=0, description="/readyz answers 503 while the file system of the data dir has less free space "
        "than this (bytes).")
    shutdown_timeout: float = Field(
        10.0, gt=0, description="Seconds a stopping API (SIGTERM, Ctrl-C) waits for open responses, such as streams "
        "of unfinished jobs and downloads, before it closes them.")

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def installed_models_dir(self) -> Path:
        return self.data_dir / "models"



@lru_cache
def get_settings() -> Settings:
    return Settings()


def usable_cores() -> int:
    """The cores this process may run on: joblib's count, the least of the machine's cores, the process's CPU
    affinity (a container's cpuset, `taskset`) and its cgroup's CPU quota rounded up (`docker run --cpus`, a
    Kubernetes CPU limit, compose's `cpus:`)."""
    from joblib import cpu_count  # about 0.2 s to import: only the commands that start workers count cores

    return max(1, cpu_count())


def cores_per_worker(num_workers: int) -> int:
    """One worker's share of the usable cores when `num_workers` run side by side on this host."""
    return max(1, usable_cores() // num_workers)


def share_cores(num_workers: int) -> None:
    """Give each of `num_workers` workers started from this process its share of the usable cores (`ort_threads`:
    the lanes of a CPU worker, the measuring and encoding processes of any worker), unless DSB_ORT_THREADS says."""
    if num_workers > 1 and "DSB_ORT_THREADS" not in os.environ:
        os.environ["DSB_ORT_THREADS"] = str(cores_per_worker(num_workers))
