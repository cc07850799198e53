"""`deepsynthbody bench-gpu`: the GPU path on one CUDA GPU, checked and measured in one run.

Checks (printed as OK/FAIL and kept in the JSON): GPU noise and int16 conversion bit-identical to the CPU
path; the same samples from two sessions, from a padded short batch and a full one, with and without
onnxruntime's end-of-run synchronisation. Measures: the GPU output against the CPU provider's (fp32, TF32,
fp16 variant), inference alone with IO binding, the generate stage (noise -> ONNX -> int16 in pinned host
memory) per batch size and precision, and the service end to end with a GPU worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepsynthbody.core.settings import Settings
from model_store.store import open_store

MODEL_ID = "pulse2pulse-ecg"


class Report:
    def __init__(self, out: Path | None) -> None:
        self.out, self.data = out, {"checks": {}, "rates": {}, "differences": {}, "errors": {}, "end_to_end": {}}

    def section(self, name: str, body: Callable[[], None], only: tuple[str, ...] = ()) -> None:
        if only and name not in only:
            return
        print(f"== {name}", flush=True)
        try:
            body()
        except Exception:  # noqa: BLE001 - one failing section must not cost the others' numbers
            self.data["errors"][name] = traceback.format_exc()
            print(self.data["errors"][name], flush=True)
        self.save()

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.data["checks"][name] = {"ok": bool(ok), "detail": detail}
        print(f"  {'OK  ' if ok else 'FAIL'} {name} {detail}", flush=True)

    def rate(self, name: str, value: float) -> None:
        self.data["rates"][name] = value
        print(f"  {name}: {value:,.0f} ECG/s", flush=True)

    def save(self) -> None:
        if self.out:
            self.out.write_text(json.dumps(self.data, indent=2))


def _timed(step: Callable[[], int], seconds: float) -> float:
    step()
    step()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += step()
    return done / (time.perf_counter() - started)


def _before_manifest(path: Path) -> str:
    """sha256 of an archive's bytes up to its manifest.json entry (which holds the job's times)."""
    with zipfile.ZipFile(path) as archive:
        end = archive.getinfo("manifest.json").header_offset
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while end > 0:
            block = data.read(min(end, 1 << 22))
            digest.update(block)
            end -= len(block)
    return digest.hexdigest()


def _execution_provider(path: Path) -> str:
    """Where an archive's samples were made, as its manifest says."""
    with zipfile.ZipFile(path) as archive:
        return str(json.loads(archive.read("manifest.json"))["execution_provider"])


def run(seconds: float, batches: tuple[int, ...], e2e_n: int, out: Path | None,
        only: tuple[str, ...] = (), version: int | None = None) -> dict[str, Any]:
    import cupy as cp
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    from model_store.recipes.fp16 import to_fp16
    from workers import cuda_runtime, noise, postprocess

    report = Report(out)
    settings = Settings()
    store = open_store(settings)
    entry = store.get(MODEL_ID, version) if version else store.resolve("cardiovascular", "ecg", MODEL_ID)
    pinned = {"version": entry.manifest.version}  # every request of the end-to-end rows asks for this version
    print(f"model {MODEL_ID} version {entry.manifest.version}", flush=True)
    manifest, spec = entry.manifest, entry.manifest.output
    fp32_path = entry.artifact_path
    fp16_path = Path(tempfile.mkdtemp()) / "model.fp16.onnx"
    props = cp.cuda.runtime.getDeviceProperties(0)
    report.data["machine"] = {"gpu": props["name"].decode(), "onnxruntime": ort.__version__, "cupy": cp.__version__,
                              "providers": ort.get_available_providers(), "cpu_cores": os.cpu_count(),
                              "model": f"{MODEL_ID}:{entry.manifest.version}"}
    print(report.data["machine"], flush=True)
    started = time.perf_counter()
    if not only or "GPU vs CPU" in only or "inference only" in only or "generate stage" in only:
        to_fp16(fp32_path, fp16_path)
    report.data["fp16_convert_s"] = time.perf_counter() - started
    models = {"fp32": fp32_path, "tf32": fp32_path, "fp16": fp16_path}
    params8, params12 = {"leads": 8}, {"leads": 12}

    def session(precision: str, stream: Any, algo: str = "HEURISTIC", graph: bool = False) -> Any:
        options = cuda_runtime.provider_options(stream, tf32=precision == "tf32", algo_search=algo)
        if graph:
            options["enable_cuda_graph"] = "1"
        so = ort.SessionOptions()
        so.log_severity_level = 3
        return ort.InferenceSession(str(models[precision]), so,
                                    providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])

    def pipeline(precision: str, batch: int, params: dict[str, Any] | None = None, synchronize: bool = True,
                 algo: str = "HEURISTIC") -> Any:
        stream = cuda_runtime.new_stream()
        return cuda_runtime.CudaSignalPipeline(session(precision, stream, algo), stream, manifest, params or params8,
                                               batch, synchronize=synchronize)

    seed, start, count = 20261128, 1000, 64
    reference: dict[str, np.ndarray] = {}

    def correctness() -> None:
        pipe = pipeline("fp32", 512)
        samples = pipe.submit(seed, start, count).samples().copy()
        drawn = noise.draw(manifest.noise_inputs, seed, start, count)["noise"]
        gpu_noise = pipe.noise["noise"][:count].get()
        report.check("GPU noise bit-identical to the CPU path's", np.array_equal(gpu_noise.view(np.uint32),
                                                                              drawn.view(np.uint32)))
        raw = pipe.raw[:count].get()
        report.check("GPU int16 conversion bit-identical to the CPU path's (8 leads)",
                     np.array_equal(samples, postprocess.signal_samples(raw, spec, params8)))
        pipe12 = pipeline("fp32", 512, params12)
        samples12 = pipe12.submit(seed, start, count).samples().copy()
        report.check("GPU int16 conversion bit-identical to the CPU path's (12 leads)",
                     np.array_equal(samples12, postprocess.signal_samples(pipe12.raw[:count].get(), spec, params12)))
        report.check("8 leads are the first columns' leads of 12", np.array_equal(samples12[..., [0, 1, 6, 7, 8, 9, 10, 11]],
                                                                                  samples))
        again = pipeline("fp32", 512).submit(seed, start, count).samples().copy()
        report.check("same samples from a second session", np.array_equal(again, samples))
        full = pipe.submit(seed, start, 512).samples()[:count].copy()
        report.check("a padded short batch gives the same samples as a full one", np.array_equal(full, samples))
        nosync = pipeline("fp32", 512, synchronize=False)
        got = [nosync.submit(seed, start + k * 512, 512) for k in range(3)]
        ok = all(np.array_equal(p.samples(), pipe.submit(seed, start + k * 512, 512).samples()) for k, p in enumerate(got))
        report.check("without end-of-run synchronisation: same samples", ok)
        batched = np.concatenate([s.copy() for s, _ in pipe.run(seed, [(start + k * 100, 100) for k in range(7)])])
        expected = np.concatenate([pipe.submit(seed, start, 512).samples().copy(),
                                   pipe.submit(seed, start + 512, 188).samples().copy()])
        report.check("run() over 7 batches of 100 equals batches of 512 + 188", np.array_equal(batched, expected))
        other = pipeline("fp32", 1024).submit(seed, start, count).samples()
        report.check("(info) batch 1024 gives the same samples as batch 512", np.array_equal(other, samples))
        reference["noise"], reference["gpu_fp32"] = drawn, raw

    def differences() -> None:
        so = ort.SessionOptions()
        cpu = ort.InferenceSession(str(fp32_path), so, providers=["CPUExecutionProvider"])
        (cpu_raw,) = cpu.run(None, {"noise": reference["noise"]})
        cpu_int16 = postprocess.signal_samples(cpu_raw, spec, params8)
        (cpu16_raw,) = ort.InferenceSession(str(fp16_path), so, providers=["CPUExecutionProvider"]).run(
            None, {"noise": reference["noise"]})
        for name in ("fp32", "tf32", "fp16"):
            pipe = pipeline(name, 512)
            samples = pipe.submit(seed, start, count).samples().copy()
            raw = pipe.raw[:count].get()
            diff = np.abs(raw.astype(np.float64) - cpu_raw) * spec.scale
            changed = samples != cpu_int16
            row = {"max_abs_uV": float(diff.max()), "mean_abs_uV": float(diff.mean()),
                   "int16_values_differing": float(changed.mean()),
                   "max_int16_difference": int(np.abs(samples.astype(np.int32) - cpu_int16).max())}
            report.data["differences"][f"GPU {name} vs CPU fp32"] = row
            print(f"  GPU {name} vs CPU fp32: {row}", flush=True)
        diff = np.abs(cpu16_raw.astype(np.float64) - cpu_raw) * spec.scale
        report.data["differences"]["CPU fp16 vs CPU fp32"] = {"max_abs_uV": float(diff.max()),
                                                              "mean_abs_uV": float(diff.mean())}
        print(f"  CPU fp16 vs CPU fp32: {report.data['differences']['CPU fp16 vs CPU fp32']}", flush=True)

    def inference_only() -> None:
        for name in ("fp32", "tf32", "fp16"):
            for batch in batches:
                stream = cuda_runtime.new_stream()
                sess = session(name, stream)
                with stream:
                    x = cp.random.uniform(-1, 1, (batch, 8, 5000), dtype=cp.float32)
                    y = cp.empty((batch, 8, 5000), dtype=cp.float32)
                binding = sess.io_binding()
                binding.bind_input("noise", "cuda", 0, np.float32, list(x.shape), x.data.ptr)
                binding.bind_output(spec.tensor, "cuda", 0, np.float32, list(y.shape), y.data.ptr)

                def step(sess: Any = sess, binding: Any = binding, batch: int = batch) -> int:
                    sess.run_with_iobinding(binding)
                    return batch

                report.rate(f"inference only (IO binding), {name}, batch {batch}", _timed(step, seconds))

    def stage() -> None:
        for name in ("fp32", "tf32", "fp16"):
            for batch in batches:
                for synchronize in (True, False):
                    pipe = pipeline(name, batch, synchronize=synchronize)
                    position = [0]

                    def step(pipe: Any = pipe, batch: int = batch, position: list[int] = position) -> int:
                        # keep two batches in flight, as the worker does
                        pending = [pipe.submit(seed, position[0] + k * batch, batch) for k in range(2)]
                        for p in pending:
                            p.samples()
                        position[0] += 2 * batch
                        return 2 * batch

                    report.rate(f"generate stage (noise -> ONNX -> int16 pinned), {name}, batch {batch}, "
                                f"sync {'on' if synchronize else 'off'}", _timed(step, seconds))

    def stage_streamed() -> None:
        for name in ("tf32", "fp16", "fp32"):
            pipe = pipeline(name, 512, synchronize=False)
            plan = [(k * 512, 512) for k in range(200)]
            started = time.perf_counter()
            done = sum(len(s) for s, _ in pipe.run(seed, plan))
            report.rate(f"generate stage via run() (the worker's loop), {name}, batch 512, 102,400 ECGs",
                        done / (time.perf_counter() - started))

    def end_to_end() -> None:
        import httpx

        from deepsynthbody.bench import Service
        from deepsynthbody.bench import end_to_end as e2e

        base = Path(tempfile.mkdtemp(prefix="dsb-gpu-"))
        data = base / "data"
        shutil.copytree(settings.installed_models_dir, data / "models")
        sink = base / "download.zip"
        small = max(1000, e2e_n // 5)
        for workers, formats in ((1, ("npy", "wfdb", "json", "csv", "asc")), (4, ("npy", "wfdb", "csv"))):
            os.environ["DSB_CHUNK_SIZE"] = str(small // workers if workers > 1 else 2000)
            service = Service(data, workers, max_samples=e2e_n)
            try:
                with httpx.Client(base_url=service.url, timeout=600) as client:
                    e2e(client, {"num_samples": 2 * workers, "format": "npy", **pinned}, sink)
                    for fmt in formats:
                        n = e2e_n if fmt == "npy" else small
                        secs = e2e(client, {"num_samples": n, "seed": 1, "format": fmt, **pinned}, sink)
                        name = f"service {fmt}, {n} ECGs, {workers} GPU worker(s), POST to archive downloaded"
                        report.data["end_to_end"][name] = {"ECG/s": n / secs, "archive_MB": sink.stat().st_size / 1e6}
                        report.rate(name, n / secs)
                        provider = _execution_provider(sink)  # a worker whose GPU cannot start runs on the CPU
                        report.check(f"{name}: made on the GPU", provider == "CUDAExecutionProvider", provider)
            finally:
                service.stop()
                shutil.rmtree(data / "jobs", ignore_errors=True)
                shutil.rmtree(data / "redis", ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)

    def worker_in_process() -> None:
        """The worker's own two steps, without HTTP or Redis: where an end-to-end second goes."""
        import uuid

        from workers import encoding_processes, tasks

        small = max(1000, e2e_n // 5)
        alone = settings.model_copy(update={"encoding_processes": 0})
        in_processes = encoding_processes.processes(settings, "CUDAExecutionProvider", "csv")
        runs = [("npy", 2000, settings, ""), ("npy", e2e_n, settings, "")]
        archives: dict[str, str] = {}
        for fmt in ("wfdb", "csv", "asc", "dicom"):  # the encoder thread alone, then the worker's processes
            runs += [(fmt, small // (4 if fmt == "dicom" else 1), local, label) for local, label in
                     ((alone, ", encoder thread alone"), (settings, f", encoded in {in_processes} processes"))]
        for fmt, n, local, label in runs:
            spec = {"job_id": uuid.uuid4().hex, "model_id": MODEL_ID, "model_version": entry.manifest.version,
                    "num_samples": n, "seed": 1, "format": fmt, "params": params8, "precision": "fp32", "request": {},
                    "chunks": [[0, n]]}
            started = time.perf_counter()
            chunk = tasks.run_chunk(spec, 0, local)  # type: ignore[arg-type]
            generated = time.perf_counter()
            if chunk["provider"] != "CUDAExecutionProvider":  # its GPU could not start (the log says why)
                raise RuntimeError(f"the worker ran on {chunk['provider']}, not the GPU")
            tasks.assemble(spec, local, None, [chunk])  # type: ignore[arg-type]
            job_dir = local.jobs_dir / str(spec["job_id"])
            if label:  # the same archive either way, but for the manifest's times
                digest = _before_manifest(job_dir / "result.zip")
                if fmt in archives:
                    report.check(f"{fmt} archive encoded in processes = the encoder thread's", archives[fmt] == digest)
                archives[fmt] = digest
            shutil.rmtree(job_dir, ignore_errors=True)  # a 20,000-ECG archive is 1.6 GB
            name = f"worker in process, {fmt}, {n} ECGs ({chunk['arithmetic']}{label})"
            report.data["end_to_end"][name] = {"generate + encode ECG/s": n / (generated - started),
                                               "archive s": time.perf_counter() - generated}
            print(f"  {name}: {report.data['end_to_end'][name]}", flush=True)

    report.section("correctness", correctness, only)
    report.section("GPU vs CPU", differences, only)
    report.section("inference only", inference_only, only)
    report.section("generate stage", stage, only)
    report.section("generate stage, worker loop", stage_streamed, only)
    report.section("worker in process", worker_in_process, only)
    report.section("end to end", end_to_end, only)
    print("\n| measurement | ECG/s |\n|---|---|")
    for name, value in report.data["rates"].items():
        print(f"| {name} | {value:,.0f} |")
    failed = [n for n, c in report.data["checks"].items() if not c["ok"]]
    print(f"checks: {len(report.data['checks']) - len(failed)} OK, {len(failed)} failed {failed}; "
          f"sections with errors: {list(report.data['errors'])}")
    return report.data
