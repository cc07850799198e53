"""RQ job functions. The API enqueues them by dotted name (deepsynthbody.jobs.GENERATE_TASK)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rq import get_current_job
from rq.job import Job

from deepsynthbody import __version__
from deepsynthbody.jobs import JobPaths, JobSpec
from deepsynthbody.settings import Settings, get_settings
from workers import archive, lifecycle, pipeline, postprocess, runtime
from workers.encoders import ENCODERS, EncodeContext


def generate(spec: JobSpec) -> dict[str, Any]:
    """The RQ job: generate spec['num_samples'] samples with this worker's settings."""
    return run(spec, get_settings(), get_current_job())


def run(spec: JobSpec, settings: Settings, job: Job | None = None) -> dict[str, Any]:
    """Generate in batches, saving progress after each, then archive the samples."""
    entry = settings.model_store().get(spec["model_id"], spec["model_version"])
    model = runtime.load(entry, settings)
    output = entry.manifest.output
    params, total = spec["params"], spec["num_samples"]

    paths = JobPaths(settings.jobs_dir, spec["job_id"])
    shutil.rmtree(paths.root, ignore_errors=True)  # a retried job starts clean
    paths.members.mkdir(parents=True)
    shape, dtype = postprocess.sample_shape(output, params)
    samples = np.lib.format.open_memmap(paths.samples, mode="w+", dtype=dtype, shape=(total, *shape))
    ctx = EncodeContext(output, _channel_names(output, params), spec["seed"], total, paths.members)
    writer = ENCODERS[spec["format"]](ctx)
    batch_size = runtime.batch_size(model, settings)

    def consume(batch: np.ndarray, start: int) -> None:
        samples[start : start + len(batch)] = batch
        samples.flush()
        writer.write(batch, start)
        _report(job, progress={"done": start + len(batch), "total": total})

    def before_batch(start: int) -> None:
        try:
            lifecycle.between_batches(f"job {spec['job_id']} at {start}/{total} samples")
        except lifecycle.JobStopped:
            shutil.rmtree(paths.root, ignore_errors=True)  # a canceled job leaves nothing behind
            raise

    started_at = _now()
    _report(job, provider=model.provider, batch_size=batch_size, progress={"done": 0, "total": total})
    pipeline.produce(model, spec["seed"], params, pipeline.batches(total, batch_size), consume, before_batch)
    del samples

    members = archive.member_files(paths.members)
    if spec["format"] == "npy":
        members = [(paths.samples, f"{ctx.bundle_name}.npy")]
    manifest = archive.write(
        paths, members, _manifest(spec, job, model, batch_size, ctx, started_at), settings.archive_compression
    )
    shutil.rmtree(paths.members)
    return {"archive": paths.archive.name, "files": len(manifest["files"])}


def _channel_names(output: Any, params: dict[str, Any]) -> list[str]:
    return output.channel_names(params) if output.kind == "signal" else list(output.channels)


def _report(job: Job | None, **fields: Any) -> None:
    if job is not None:  # None when called directly, outside a worker
        job.meta.update(fields)
        job.save_meta()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _manifest(
    spec: JobSpec, job: Job | None, model: runtime.ModelRuntime, batch_size: int, ctx: EncodeContext, started_at: str
) -> dict[str, Any]:
    card = model.entry.manifest
    out = card.output
    description: dict[str, Any] = {"kind": out.kind, "format": spec["format"], "dtype": str(postprocess.sample_shape(out, spec["params"])[1])}
    if out.kind == "signal":
        description |= {"unit": out.unit, "sampling_rate": out.sampling_rate, "length": out.length, out.record_key: ctx.channel_names}
    else:
        description |= {"height": out.height, "width": out.width, "channels": out.channels, "mask_channel": out.mask_channel}
    return {
        "job_id": spec["job_id"],
        "request": spec["request"],
        "seed": spec["seed"],
        "num_samples": spec["num_samples"],
        "model": {"id": card.id, "version": card.version, "name": card.name, "sha256": card.sha256,
                  "category": card.category, "subcategory": card.subcategory},
        "execution_provider": model.provider,
        "batch_size": batch_size,
        "software": {"deepsynthbody": __version__, "onnxruntime": runtime.ort.__version__, "numpy": np.__version__},
        "created_at": job.created_at.isoformat() if job and job.created_at else None,
        "started_at": started_at,
        "finished_at": _now(),
        "output": description,
        "license": card.license,
        "citations": [c.model_dump(exclude_none=True) for c in card.citations],
        "noise": "numpy Philox4x64 keyed by seed + (sample index << 64); inputs drawn in manifest order",
    }
