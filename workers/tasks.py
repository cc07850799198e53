"""RQ job functions, enqueued by dotted name (deepsynthbody.core.jobs): generate, or chunks then their archive."""

from __future__ import annotations

import errno
import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from redis.exceptions import RedisError, ResponseError
from rq import get_current_job
from rq.job import Job, JobStatus

from deepsynthbody import __version__
from deepsynthbody.core import clock
from deepsynthbody.core.job_changes import job_changed
from deepsynthbody.core.jobs import JobPaths, JobSpec, candidate_chunks, chunk_job_id
from deepsynthbody.core.samples_file import SamplesFile
from deepsynthbody.core.settings import Settings, get_settings
from model_store import distributions
from model_store.store import ModelEntry, open_store
from workers import annotations, archive, ecg_filter, encoding_processes, lifecycle, pipeline, postprocess, runtime
from workers.encoders import ENCODERS, BatchWriter, EncodeContext
from workers.encoders.base import MemberSink

MEMBER_ZIP = ".members.zip"  # a chunk's per-sample members, zipped (workers.archive.MemberZip)


WRITABLE_WAIT_SECONDS = 30


class DiskFull(Exception):
    """The results disk (or Redis's) filled up under a job: its files are gone, it fails without retries."""


def generate(spec: JobSpec) -> dict[str, Any]:
    """A request that fits in one chunk: generate it, then archive it, in one job."""
    with _full_disk_fails_cleanly(spec, get_current_job()):
        return run(spec, get_settings(), get_current_job())


def generate_chunk(spec: JobSpec, index: int) -> dict[str, Any]:
    """One chunk of a larger request; any worker on any machine sharing Redis and the results store."""
    with _full_disk_fails_cleanly(spec, get_current_job()):
        return run_chunk(spec, index, get_settings(), get_current_job())


def archive_chunks(spec: JobSpec) -> dict[str, Any]:
    """Runs once every chunk has finished (an RQ dependency): the archive of the whole request."""
    job = get_current_job()
    chunks = [dependency.return_value() for dependency in job.fetch_dependencies()] if job else []
    with _full_disk_fails_cleanly(spec, job):
        return assemble(spec, get_settings(), job, chunks)


@contextmanager
def _full_disk_fails_cleanly(spec: JobSpec, job: Job | None) -> Iterator[None]:
    """A full disk under a job (no space for its files, or Redis refusing writes because its own disk is full):
    the request's files go at once, which gives the space back, and once Redis takes writes again (so the failure
    can be recorded and the worker goes on) the job fails with a message saying so (`DiskFull`: not retried)."""
    try:
        yield
    except (OSError, ResponseError) as exc:
        if not (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or refuses_writes(exc)):
            raise
        shutil.rmtree(JobPaths(get_settings().jobs_dir, spec["job_id"]).root, ignore_errors=True)
        _wait_until_redis_writes(job)
        raise DiskFull("the disk filled up while this job ran (no space left for its files, or for the job queue's); "
                       "its files were removed to give the space back. Submit it again once there is room "
                       "(GET /readyz says how much space is free)") from None


def refuses_writes(exc: BaseException) -> bool:
    """Redis saying it takes no writes because it cannot save them (its disk is full or unwritable)."""
    return isinstance(exc, ResponseError) and "MISCONF" in str(exc)


def _wait_until_redis_writes(job: Job | None) -> None:
    """Redis refuses writes while it cannot append to its file, and takes them again within a second of space
    coming back: wait for that (the job's meta is the write), up to WRITABLE_WAIT_SECONDS."""
    deadline = time.monotonic() + WRITABLE_WAIT_SECONDS
    while job is not None and time.monotonic() < deadline:
        try:
            job.save_meta()
            return
        except RedisError:
            time.sleep(0.2)


def run(spec: JobSpec, settings: Settings, job: Job | None = None) -> dict[str, Any]:
    chunk = run_chunk(spec, 0, settings, job)
    return assemble(spec, settings, job, [chunk])


def run_chunk(spec: JobSpec, index: int, settings: Settings, job: Job | None = None) -> dict[str, Any]:
    """Generate samples start .. start+count-1 of the request in batches, saving progress after each."""
    if candidate_chunks(spec):
        return _search_candidates(spec, index, settings, job)
    first, total = spec["chunks"][index]
    entry = open_store(settings).get(spec["model_id"], spec["model_version"])
    model = runtime.load(entry, settings, spec.get("precision", "fp32"))
    paths = JobPaths(settings.jobs_dir, spec["job_id"])
    paths.parts.mkdir(parents=True, exist_ok=True)
    shape, dtype = postprocess.sample_shape(entry.manifest.output, spec["params"])
    in_place = _npy_in_place(spec, settings)  # an npy job's array is written as its archive's first member
    kept = _kept_progress(job, paths)
    samples = SamplesFile.create(paths.samples, dtype, (spec["num_samples"], *shape),
                                 archive.member_header(_bundle_name(entry) + ".npy") if in_place else b"")
    batch_size = runtime.batch_size(model, settings)
    started_at = _started(job)

    def before_batch(start: int) -> None:
        lifecycle.between_batches(f"job {spec['job_id']} chunk {index} at {start - first}/{total} samples")

    _report_start(job, model, batch_size, started_at, {"done": kept, "total": total})
    with archive.MemberZip(paths.parts / f"{index:05d}{MEMBER_ZIP}", settings.archive_compression) as members:
        ctx = _context(entry, spec, paths, members, index)
        encoding = encoding_processes.processes(settings, model.provider, spec["format"])
        writer, measure = _writer(spec, settings, ctx, encoding), None
        if spec.get("annotate") and entry.manifest.measurements:
            measure = annotations.measurer(entry.manifest.measurements, ctx, model.measuring_processes)
            writer = annotations.AnnotatedWriter(writer, ctx, spec["format"], paths.measurements)

        def consume(batch: np.ndarray, start: int) -> None:
            samples.write(start, batch)
            writer.write(batch, start)
            _report(job, progress={"done": max(kept, start + len(batch) - first), "total": total})

        plan, selection, take = pipeline.batches(total, batch_size, first), None, consume
        if spec.get("where"):  # one chunk: its samples are found in candidate order
            selection = ecg_filter.Selection(entry.manifest.measurements or "", ctx, spec["where"], total,
                                             spec["candidate_budget"], consume, model.measuring_processes)
            plan, take, measure = selection.plan(batch_size), selection.consume, selection.measure
        pipeline.produce(model, spec["seed"], spec["params"], plan, take, before_batch, batch_size, measure, encoding)
    done = _chunk_record(index, model, batch_size, started_at, job)
    return done | ({"selection": selection.finish()} if selection is not None else {})


def _writer(spec: JobSpec, settings: Settings, ctx: EncodeContext, processes: int) -> BatchWriter:
    """The format's writer: in the encoder thread, or in `processes` of the worker's processes
    (`workers.encoding_processes`; the pipeline forks them before its lanes start)."""
    if not processes:
        return ENCODERS[spec["format"]](ctx)
    return encoding_processes.PieceWriter(spec["format"], ctx, processes, settings.archive_compression)


def _report_start(job: Job | None, model: runtime.ModelRuntime, batch_size: int, started_at: str,
                  progress: dict[str, int]) -> None:
    _report(job, started_at=started_at, provider=model.provider, arithmetic=model.arithmetic, batch_size=batch_size,
            progress=progress)


def _chunk_record(index: int, model: runtime.ModelRuntime, batch_size: int, started_at: str,
                  job: Job | None) -> dict[str, Any]:
    """What a chunk returns (its RQ result) for the archive job's manifest."""
    return {"chunk": index, "provider": model.provider, "arithmetic": model.arithmetic, "batch_size": batch_size,
            "created_at": _created(job), "started_at": started_at}


def _search_candidates(spec: JobSpec, index: int, settings: Settings, job: Job | None) -> dict[str, Any]:
    """A chunk of a filtered request cut in candidate space: its candidates drawn, measured and the matching ones
    kept for the archive job (`workers.ecg_filter.CandidateSearch`); its progress is how many it kept."""
    first, count = spec["chunks"][index]
    entry = open_store(settings).get(spec["model_id"], spec["model_version"])
    model = runtime.load(entry, settings, spec.get("precision", "fp32"))
    paths = JobPaths(settings.jobs_dir, spec["job_id"])
    _, dtype = postprocess.sample_shape(entry.manifest.output, spec["params"])
    batch_size, started_at, total = runtime.batch_size(model, settings), _started(job), spec["num_samples"]

    def report(accepted: int) -> None:
        _report(job, progress={"done": accepted, "total": total})

    def before_batch(start: int) -> None:
        lifecycle.between_batches(f"job {spec['job_id']} chunk {index} at candidate {start}")

    _report_start(job, model, batch_size, started_at, {"done": 0, "total": total})
    ctx = _context(entry, spec, paths, None, index)  # measuring only: nothing is written in the format here
    search = ecg_filter.CandidateSearch(entry.manifest.measurements or "", ctx, spec["where"], total, first, count,
                                        paths.candidates, index, dtype, lambda: _found_before(spec, index, job),
                                        report, model.measuring_processes)
    pipeline.produce(model, spec["seed"], spec["params"], search.plan(batch_size), search.consume, before_batch,
                     batch_size, search.measure)
    return _chunk_record(index, model, batch_size, started_at, job) | {"candidates": search.finish()}


def _found_before(spec: JobSpec, index: int, job: Job | None) -> int | None:
    """How many matching candidates the chunks before this one kept, once they have all finished (RQ's statuses and
    results); None while one of them has not (or outside a worker, where chunks are not run side by side)."""
    if index == 0:
        return 0
    if job is None:
        return None
    earlier = Job.fetch_many([chunk_job_id(spec["job_id"], i) for i in range(index)], connection=job.connection,
                             serializer=job.serializer)
    if any(part is None or part.get_status(refresh=False) != JobStatus.FINISHED for part in earlier):
        return None
    return sum(part.return_value()["candidates"]["accepted"] for part in earlier)  # type: ignore[union-attr]


WRITE_BATCH = 64  # found candidates written as samples this many at a time


def _write_found(spec: JobSpec, settings: Settings, job: Job | None, entry: ModelEntry,
                 paths: JobPaths) -> dict[str, Any]:
    """The archive job of a request cut in candidate space: the first `num_samples` candidates the chunks found, in
    candidate order, written as the request's samples in its format (and its labels); what the manifest says of
    the selection. Fails (not retried) when the chunks found fewer."""
    total = spec["num_samples"]
    shape, dtype = postprocess.sample_shape(entry.manifest.output, spec["params"])
    header = archive.member_header(_bundle_name(entry) + ".npy") if _npy_in_place(spec, settings) else b""
    samples = SamplesFile.create(paths.samples, dtype, (total, *shape), header)
    paths.parts.mkdir(parents=True, exist_ok=True)
    written, last = 0, -1
    with archive.MemberZip(paths.parts / f"{0:05d}{MEMBER_ZIP}", settings.archive_compression) as members:
        ctx = _context(entry, spec, paths, members, 0)
        writer = annotations.AnnotatedWriter(ENCODERS[spec["format"]](ctx), ctx, spec["format"], paths.measurements)
        for chunk in range(len(spec["chunks"])):
            if written == total:
                break
            rows, found = ecg_filter.found_candidates(paths.candidates, chunk, shape, dtype)
            take = min(len(found), total - written)
            for at in range(0, take, WRITE_BATCH):
                batch = np.asarray(rows[at:min(at + WRITE_BATCH, take)])
                for k in range(len(batch)):
                    ctx.measurements[written + k] = found[at + k]["measurements"]
                samples.write(written, batch)
                writer.write(batch, written)
                written += len(batch)
                _report(job, progress={"done": written, "total": total})
            if take:
                last = found[take - 1]["candidate"]
    if written < total:
        raise ecg_filter.budget_exceeded(written, total, spec["candidate_budget"])
    return {"where": spec["where"], "candidates_drawn": last + 1, "accepted": total,
            "acceptance": round(total / (last + 1), 4), "candidate_budget": spec["candidate_budget"]}


def assemble(spec: JobSpec, settings: Settings, job: Job | None, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Join the chunks' parts into the archive, whatever workers made them: the bytes are the same."""
    entry = open_store(settings).get(spec["model_id"], spec["model_version"])
    paths = JobPaths(settings.jobs_dir, spec["job_id"])
    if paths.archive.exists():  # an earlier try finished it (it is renamed into place whole), then its worker died
        return _finished_before(paths, job)
    selection = _write_found(spec, settings, job, entry, paths) if candidate_chunks(spec) else \
        next((c["selection"] for c in chunks if c.get("selection")), None)
    member_zips = sorted(paths.parts.glob(f"*{MEMBER_ZIP}"))
    in_place, bundles = None, []
    if spec["format"] == "npy":
        samples, name = SamplesFile(paths.samples), f"{_bundle_name(entry)}.npy"
        if samples.start:  # written behind its zip header (`_npy_in_place`): finished where it is
            in_place = (samples, name)
        else:
            bundles = [([paths.samples], name)]
    else:
        bundles = [(pieces, f"{_bundle_name(entry)}{suffix}") for suffix, pieces in _bundle_pieces(paths).items()
                   if suffix != annotations.LABELS_SUFFIX]
    labels = sorted(paths.parts.glob(f"*{annotations.LABELS_SUFFIX}"))
    if labels:
        bundles.append((labels, annotations.LABELS_MEMBER))
    finished_at = _now(job)
    manifest = archive.write(paths, member_zips, bundles,
                             _manifest(spec, job, entry, entry.manifest.output.channel_names(spec["params"]), chunks,
                                       finished_at, selection),
                             settings.archive_compression, in_place)
    _report(job, finished_at=finished_at)  # the status's ended_at: the manifest's finished_at
    _remove_scratch(paths)
    return {"archive": paths.archive.name, "files": len(manifest["files"])}


def _remove_scratch(paths: JobPaths) -> None:
    """The chunks' parts and found candidates, once the archive holds what they were for."""
    shutil.rmtree(paths.parts, ignore_errors=True)
    shutil.rmtree(paths.candidates, ignore_errors=True)


def _finished_before(paths: JobPaths, job: Job | None) -> dict[str, Any]:
    """The archive step run again after a try that wrote the whole archive, and maybe removed the chunks' parts,
    but died before RQ heard it had finished: the archive stands as it is (the same bytes a new one would have)."""
    with zipfile.ZipFile(paths.archive) as done:
        manifest = json.loads(done.read("manifest.json"))
    _report(job, finished_at=manifest["finished_at"])
    _remove_scratch(paths)
    return {"archive": paths.archive.name, "files": len(manifest["files"])}


def _kept_progress(job: Job | None, paths: JobPaths) -> int:
    """A part run again (its worker died or stopped) rewrites its samples from its first one, the same bytes over
    the same bytes: what it had reached stays its progress until it goes further, so `done` never goes back. Unless
    its samples file is gone (a new, empty one is made): then it starts from 0 again."""
    saved = job.meta.get("progress") if job is not None else None
    return int(saved.get("done", 0)) if saved and paths.samples.exists() else 0


def _npy_in_place(spec: JobSpec, settings: Settings) -> bool:
    """A stored npy member can be the samples file itself; a deflated one is compressed into the archive."""
    return spec["format"] == "npy" and settings.archive_compression == "stored"


def _bundle_name(entry: ModelEntry) -> str:
    """The one member of formats holding every sample in one file, without its suffix: `ecgs`."""
    return f"{entry.manifest.output.file_prefix}s"


def _bundle_pieces(paths: JobPaths) -> dict[str, list[Path]]:
    """The chunks' pieces of one-file formats (named chunk.suffix), by suffix, in chunk order."""
    by_suffix: dict[str, list[Path]] = {}
    for part in sorted(paths.parts.iterdir()):
        if part.is_file() and MEMBER_ZIP not in part.name:
            by_suffix.setdefault(part.suffix, []).append(part)
    return by_suffix


def _context(entry: ModelEntry, spec: JobSpec, paths: JobPaths, members: MemberSink, chunk: int) -> EncodeContext:
    names = entry.manifest.output.channel_names(spec["params"])
    return EncodeContext(entry.manifest.output, names, spec["seed"], spec["num_samples"], members, paths.parts, chunk,
                         model_id=entry.manifest.id, model_version=entry.manifest.version)


def _report(job: Job | None, **fields: Any) -> None:
    if job is not None:  # None when called directly, outside a worker
        job.meta.update(fields)
        job.save_meta()
        job_changed(job)  # wakes the clients following the request (`deepsynthbody.core.job_changes`)


def _now(job: Job | None = None) -> str:
    """The clock of every job time: Redis's (`deepsynthbody.core.clock`); this machine's outside a worker."""
    return clock.now(job.connection) if job is not None else _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _started(job: Job | None) -> str:
    """When a worker first began this part of the request: recorded once, kept when the part runs again."""
    recorded = job.meta.get("started_at") if job is not None else None
    return recorded or _now(job)


def _created(job: Job | None) -> str | None:
    """When the API accepted the request (on Redis's clock, in the job's meta), else when RQ created the job."""
    if job is None:
        return None
    return job.meta.get("created_at") or (_iso(job.created_at) if job.created_at else None)


def _earliest(moments: list[str | None]) -> str | None:
    known = [m for m in moments if m]
    return min(known, key=datetime.fromisoformat) if known else None


def _one_or_all(values: list[Any]) -> Any:
    unique = sorted(set(values), key=str)
    return unique[0] if len(unique) == 1 else unique


def _manifest(spec: JobSpec, job: Job | None, entry: ModelEntry, channel_names: list[str],
              chunks: list[dict[str, Any]], finished_at: str, selection: dict[str, Any] | None) -> dict[str, Any]:
    card, out = entry.manifest, entry.manifest.output
    description: dict[str, Any] = {"kind": out.kind, "format": spec["format"],
                                   "dtype": str(postprocess.sample_shape(out, spec["params"])[1])}
    if out.kind == "signal":
        description |= {"unit": out.unit, "sampling_rate": out.sampling_rate, "length": out.length,
                        out.record_key: channel_names}
    else:
        description |= {"height": out.height, "width": out.width, "channels": out.channels,
                        "mask_channel": out.mask_channel}
    return {
        "job_id": spec["job_id"],
        "request": spec["request"],
        "seed": spec["seed"],
        "num_samples": spec["num_samples"],
        "model": {"id": card.id, "version": card.version, "name": card.name,
                  "precision": spec.get("precision", "fp32"), "sha256": card.artifact_sha256(spec.get("precision", "fp32")),
                  "category": card.category, "subcategory": card.subcategory},
        "execution_provider": _one_or_all([c["provider"] for c in chunks]),
        "arithmetic": _one_or_all([c.get("arithmetic", "fp32") for c in chunks]),
        "batch_size": _one_or_all([c["batch_size"] for c in chunks]),
        "chunks": len(spec["chunks"]),
        "software": {"deepsynthbody": __version__, "onnxruntime": runtime.ort.__version__, "numpy": np.__version__},
        # one clock, one meaning (the status says the same): accepted by the API (its first RQ job's creation),
        # first begun by a worker, archive written
        "created_at": _earliest([_created(job), *(c.get("created_at") for c in chunks)]),
        "started_at": _earliest([c["started_at"] for c in chunks]),
        "finished_at": finished_at,
        "output": description,
        "synthetic": f"Every sample here is synthetic, made by model {card.id} version {card.version}: "
                     "none is a recording of a real person.",
        "license": card.license,
        "citations": [c.model_dump(exclude_none=True) for c in card.citations],
        "noise": "numpy Philox4x64 keyed by seed + (sample index << 64); inputs drawn in manifest order",
        **({"measurements": annotations.manifest_section(card.measurements, channel_names,
                                                         (distributions.for_manifest(card) or {}).get("agreement"))}
           if spec.get("annotate") and card.measurements else {}),
        **({"selection": selection} if selection else {}),
    }
