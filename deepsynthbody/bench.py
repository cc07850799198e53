"""`deepsynthbody bench`: the original package, the raw ONNX generator and the service end to end, one run."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from deepsynthbody.core import processes
from deepsynthbody.core.embedded_redis import EmbeddedRedis, free_port
from deepsynthbody.core.settings import Settings, cores_per_worker, usable_cores
from model_store.store import open_store

ECG = "/generate/cardiovascular/ecg"
FORMATS = ("npy", "wfdb", "csv", "asc", "json")


@dataclass
class Results:
    machine: dict[str, Any]
    rows: list[tuple[str, float, str]] = field(default_factory=list)  # (what, ECG/s or value, unit)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, what: str, value: float, unit: str = "ECG/s") -> None:
        self.rows.append((what, value, unit))
        print(f"  {what}: {shown(value, unit)} {unit}", flush=True)


def shown(value: float, unit: str) -> str:
    if unit in ("%", "uV", "ms", "of plain"):  # differences, costs and ratios keep their precision
        return f"{value:.3g}" if unit == "of plain" else f"{value:.4g}"
    return f"{value:,.1f}"


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import onnxruntime

    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable_cores(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "providers": onnxruntime.get_available_providers()}


def original_package(count: int) -> float:
    import deepfakeecg
    import torch

    torch.set_num_threads(usable_cores())
    with tempfile.TemporaryDirectory() as out:
        deepfakeecg.generate(2, out)  # load + warm up outside the timing
        started = time.perf_counter()
        deepfakeecg.generate(count, out)
        return count / (time.perf_counter() - started)


def raw_onnx(model_path: Path, seconds: float, batches: tuple[int, ...], spinning: bool) -> dict[int, float]:
    """One run at a time over all cores (onnxruntime's intra-op threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    rates = {}
    for batch in batches:
        noise = np.random.default_rng(0).uniform(-1, 1, size=(batch, 8, 5000)).astype(np.float32)
        session.run(None, {"noise": noise})
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(None, {"noise": noise})
            done += batch
        rates[batch] = done / (time.perf_counter() - started)
    return rates


def raw_onnx_side_by_side(model_path: Path, seconds: float, batches: tuple[int, ...]) -> dict[int, float]:
    """One single-threaded run per core at a time, each on its own batch: what the workers do."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    lanes = usable_cores()  # as many as a CPU worker runs
    rates = {}
    for batch in batches:
        noise = np.random.default_rng(0).uniform(-1, 1, size=(batch, 8, 5000)).astype(np.float32)

        def lane(deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                session.run(None, {"noise": noise})
                done += batch
            return done

        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(lane, [0.0] * lanes))
            started = time.perf_counter()
            done = sum(pool.map(lane, [started + seconds] * lanes))
        rates[batch] = done / (time.perf_counter() - started)
    return rates


def version_differences(settings: Settings, first: Any, served: Any, count: int = 256) -> list[tuple[str, float, str]]:
    """int16 samples of the served version against version 1 and against its own fp16 variant, same noise."""
    from workers import runtime

    params = {name: spec.default for name, spec in served.manifest.parameters.items()}

    def samples(entry: Any, precision: str) -> np.ndarray:
        model = runtime.load(entry, settings, precision)
        batches = [model.samples(1, start, 32, params) for start in range(0, count, 32)]
        return np.concatenate(batches).astype(np.int32)

    fp32 = samples(served, "fp32")
    rows = []
    versus_first = np.abs(fp32 - samples(first, "fp32"))
    version = served.manifest.version
    rows += [(f"version {version} vs 1: int16 values that differ", 100 * float(np.mean(versus_first > 0)), "%"),
             (f"version {version} vs 1: largest difference", float(versus_first.max()), "uV")]
    if "fp16" in served.manifest.precisions:
        versus_half = np.abs(fp32 - samples(served, "fp16"))
        rows += [(f"version {version} fp16 variant vs fp32 (CPU): largest difference", float(versus_half.max()), "uV"),
                 (f"version {version} fp16 variant vs fp32 (CPU): mean difference", float(versus_half.mean()), "uV")]
    return rows


class Service:
    """A private Redis, the API and `workers` worker processes, on this machine."""

    def __init__(self, data_dir: Path, workers: int, queue: str = "generate", api_processes: int = 1,
                 max_samples: int = 10_000) -> None:
        self.data_dir, self.workers, self.queue = data_dir, workers, queue
        self.redis = EmbeddedRedis(data_dir / "redis").start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DSB_REDIS_URL": self.redis.url, "DSB_DATA_DIR": str(data_dir), "DSB_QUEUE": queue,
                    "DSB_MAX_SAMPLES": str(max_samples)}
        self.api = processes.spawn([sys.executable, "-m", "deepsynthbody", "api", "--port", str(self.port),
                                    "--processes", str(api_processes)],
                                   env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pool: subprocess.Popen[bytes] | None = None
        if workers:
            threads = str(cores_per_worker(workers))
            self.pool = processes.spawn(
                [sys.executable, "-m", "deepsynthbody", "worker", "--workers", str(workers)],
                env={**self.env, "DSB_ORT_THREADS": threads}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{self.url}/readyz").json()
                if ready["checks"].get("workers", 0) >= self.workers and ready["checks"].get("models"):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("the service did not become ready")

    def worker_processes(self) -> list[psutil.Process]:
        if self.pool is None:
            return []
        try:
            pool = psutil.Process(self.pool.pid)
            return [pool, *pool.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        processes.stop(self.pool)
        processes.stop(self.api)
        self.redis.stop()


def settle() -> None:
    """Let the files earlier measurements wrote reach the disk first, so that no measurement shares the cores
    with writing back another's gigabytes."""
    os.sync()


def end_to_end(client: httpx.Client, body: dict[str, Any], sink: Path) -> float:
    """Seconds from POST until the archive is fully downloaded."""
    started = time.perf_counter()
    response = client.post(ECG, json=body)
    if response.status_code != 202:
        raise RuntimeError(f"the service refused the benchmark request: {response.text}")
    job_id = response.json()["job_id"]
    while (status := client.get(f"/jobs/{job_id}").json()["status"]) not in ("finished", "failed", "canceled"):
        time.sleep(0.1)
    if status != "finished":
        raise RuntimeError(f"benchmark job {job_id} {status}")
    with client.stream("GET", f"/jobs/{job_id}/result") as response, sink.open("wb") as out:
        for chunk in response.iter_bytes(1 << 20):
            out.write(chunk)
    return time.perf_counter() - started


EXAMPLE_FILTER = {"heart_rate": {"min": 50, "max": 60}, "qrs_duration": {"max": 100}}


def labelled_rows(client: httpx.Client, results: Results, n: int, filtered_n: int, workers: int, sink: Path,
                  pairs: int = 3) -> None:
    """Plain and annotated npy jobs side by side, `pairs` times in turn (the median of each; the ratio is the median
    of each pair's, so that a host whose speed drifts during the run moves both sides), then the README's example
    filter: its throughput in ECGs delivered, its candidates per second and the acceptance it met."""
    rates: dict[str, list[float]] = {"plain": [], "annotated": []}
    for _ in range(pairs):
        for label, extra in (("plain", {}), ("annotated", {"annotate": True})):
            settle()
            seconds = end_to_end(client, {"num_samples": n, "seed": 1, "format": "npy", **extra}, sink)
            rates[label].append(n / seconds)
    for label, values in rates.items():
        results.add(f"service npy {label}, {workers} worker(s), median of {pairs}", statistics.median(values))
    ratios = [annotated / plain for plain, annotated in zip(rates["plain"], rates["annotated"])]
    results.add(f"  annotated / plain, {workers} worker(s), median of {pairs} pairs "
                f"({', '.join(f'{r:.2f}' for r in ratios)})", statistics.median(ratios), "of plain")
    settle()
    body = {"num_samples": filtered_n, "seed": 1, "format": "npy", "where": EXAMPLE_FILTER}
    seconds = end_to_end(client, body, sink)
    with zipfile.ZipFile(sink) as archive:
        selection = json.loads(archive.read("manifest.json"))["selection"]
    results.add(f"service npy where HR 50-60 bpm and QRS <= 100 ms, {filtered_n} ECGs, {workers} worker(s)",
                filtered_n / seconds)
    results.add(f"  its candidates per second, {workers} worker(s)", selection["candidates_drawn"] / seconds,
                "candidates/s")
    results.add("  its acceptance", 100 * selection["acceptance"], "%")


def measuring_cost(settings: Settings, count: int = 100, passes: int = 3) -> float:
    """Milliseconds of one core that measuring one 12-lead ECG of the served model takes (in this process): the
    median of `passes` passes over `count` ECGs, after one unmeasured pass."""
    from workers import ecg_measurements, runtime

    entry = open_store(settings).resolve("cardiovascular", "ecg")
    params = {"leads": 12}
    samples = runtime.load(entry, settings).samples(1, 0, count, params)
    output = entry.manifest.output
    names, rate = output.channel_names(params), output.sampling_rate  # type: ignore[union-attr]
    costs = []
    for _ in range(passes + 1):
        started = time.process_time()
        for sample in samples:
            ecg_measurements.measure(sample, names, rate)
        costs.append(1000 * (time.process_time() - started) / count)
    return statistics.median(costs[1:])


def peak_rss(service: Service, client: httpx.Client, count: int, fmt: str, sink: Path) -> float:
    """Largest resident set of any worker process while it makes a `count`-ECG job, in MiB."""
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            for proc in service.worker_processes():
                try:
                    peak = max(peak, proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        end_to_end(client, {"num_samples": count, "seed": 1, "format": fmt}, sink)
    finally:
        done.set()
        watcher.join()
    return peak / 2**20


async def _latencies_under_load(url: str, clients: int, per_client: int, path: str | None = None) -> list[float]:
    """`clients` keep-alive connections, each posting back to back (aiohttp: a light client on shared cores).
    Each client's first request opens its connection and is not timed; the timing starts when all are open.
    With `path`, GETs of that path instead: the same load on a handler that does nothing (the framework's floor)."""
    import aiohttp

    latencies: list[float] = []
    body = json.dumps({"num_samples": 1, "format": "npy"}).encode()
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as http:
        ready = asyncio.Barrier(clients)

        async def one_client() -> None:
            for i in range(per_client + 1):
                if i == 1:
                    await ready.wait()  # every client has its connection open: time the steady state
                started = time.perf_counter()
                request = http.get(path) if path else http.post(ECG, data=body, headers=headers)
                async with request as response:
                    await response.read()
                    if response.status != (200 if path else 202):
                        raise RuntimeError(await response.text())
                if i:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def _copy_models(settings: Settings, data_dir: Path) -> None:
    from model_store.build import build

    build(open_store(settings))
    shutil.copytree(settings.installed_models_dir, data_dir / "models", dirs_exist_ok=True)


def run(n: int, rss_n: int, original_n: int, formats: tuple[str, ...], worker_counts: tuple[int, ...],
        clients: int, requests: int, out: Path | None, filtered_n: int = 100, labels_only: bool = False) -> Results:
    """`labels_only`: only the rows of plain, annotated and filtered jobs (`labelled_rows`)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per status poll
    settings = Settings()
    results = Results(machine())
    print(f"machine: {results.machine}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="dsb-bench-"))
    try:
        data = base / "data"
        _copy_models(settings, data)
        store = open_store(Settings(data_dir=data))
        served = store.resolve("cardiovascular", "ecg")  # the version a request gets unless it names one
        model_path = served.artifact_path
        print(f"model: {served.manifest.key} ({served.manifest.provenance.get('form', 'as published')})", flush=True)

        if not labels_only:  # the rows of the rest of the service
            print("original deepfake-ecg package (batch 1, writes .asc):", flush=True)
            results.add("original deepfakeecg.generate()", original_package(original_n))
            print(f"raw ONNX generator, {served.manifest.key} (noise prepared, CPU EP, all cores, as one run or as one "
                  "single-threaded run per core; the best row is the 'x raw' reference):", flush=True)
            best = 0.0
            for spinning in (True, False):
                raw = raw_onnx(model_path, seconds=5.0, batches=(1, 8, 32, 64), spinning=spinning)
                for batch, rate in raw.items():
                    results.add(f"raw ONNX, batch {batch}, spinning {'on' if spinning else 'off'}", rate)
                best = max(best, *raw.values())
            raw = raw_onnx_side_by_side(model_path, seconds=5.0, batches=(1, 8, 32, 64))
            for batch, rate in raw.items():
                results.add(f"raw ONNX, batch {batch}, {usable_cores()} single-threaded runs side by side", rate)
            best = max(best, *raw.values())
            results.extra["raw_best"] = best
            if served.manifest.version != 1:
                first = store.get(served.manifest.id, 1)
                print("raw ONNX generator, version 1 (as published; the 'x raw ONNX v1' reference):", flush=True)
                raw = raw_onnx_side_by_side(first.artifact_path, seconds=5.0, batches=(1, 8, 32, 64))
                for batch, rate in raw.items():
                    results.add(f"raw ONNX version 1, batch {batch}, {usable_cores()} single-threaded runs "
                                "side by side",
                                rate)
                results.extra["raw_v1_best"] = max(raw.values())
                print(f"how the samples of {served.manifest.key} differ (256 ECGs, the worker's noise and int16):",
                      flush=True)
                for what, value, unit in version_differences(Settings(data_dir=data), first, served):
                    results.add(what, value, unit)

            # Latency first: after the end-to-end jobs this VM spends a while reclaiming the gigabytes of page cache
            # they leave, and every latency measured meanwhile doubles, the framework's floor included (measured).
            for api_processes in (1, 2):
                print(f"enqueue latency, {clients} concurrent clients, {requests} requests, {api_processes} API "
                      "process(es) (no worker consumes the jobs):", flush=True)
                service = Service(data, 0, queue="bench-enqueue", api_processes=api_processes)
                try:
                    settle()
                    per_client = max(1, requests // clients)
                    for label, path in (("enqueue", None), ("floor: GET /healthz", "/healthz")):
                        latencies = sorted(asyncio.run(_latencies_under_load(service.url, clients, per_client, path)))
                        same_load = ", same load" if path else ""
                        results.add(f"{label} p50{same_load}, {api_processes} API process(es)",
                                    1000 * statistics.median(latencies), "ms")
                        results.add(f"{label} p99{same_load}, {api_processes} API process(es)",
                                    1000 * latencies[int(0.99 * (len(latencies) - 1))], "ms")
                finally:
                    service.stop()
                    shutil.rmtree(data / "redis", ignore_errors=True)  # the next service starts with an empty Redis

        print("measuring an ECG (annotate, where), 100 ECGs, one core, median of 3 passes:", flush=True)
        results.add("measuring one 12-lead ECG, one core", measuring_cost(Settings(data_dir=data)), "ms")
        sink = base / "download.zip"
        for workers in worker_counts:
            print(f"service end to end, {n} ECGs, {workers} worker(s), POST until the archive is downloaded:",
                  flush=True)
            service = Service(data, workers, max_samples=max(rss_n, n))
            try:
                with httpx.Client(base_url=service.url, timeout=120) as client:
                    end_to_end(client, {"num_samples": 2 * workers, "format": "npy"}, sink)  # load sessions
                    for fmt in () if labels_only else formats:
                        settle()
                        seconds = end_to_end(client, {"num_samples": n, "seed": 1, "format": fmt}, sink)
                        results.add(f"service {fmt}, {workers} worker(s)", n / seconds)
                    labelled_rows(client, results, n, filtered_n, workers, sink)
                    if workers == worker_counts[0] and not labels_only:
                        print(f"worker peak RSS (npy), {rss_n // 10} vs {rss_n} ECGs:", flush=True)
                        for count in (rss_n // 10, rss_n):
                            results.add(f"worker peak RSS, {count}-ECG job",
                                        peak_rss(service, client, count, "npy", sink), "MiB")
            finally:
                service.stop()
                shutil.rmtree(data / "jobs", ignore_errors=True)
                shutil.rmtree(data / "redis", ignore_errors=True)

    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(results))
    if out:
        out.write_text(json.dumps({"machine": results.machine, "rows": results.rows, **results.extra}, indent=2))
    return results


def table(results: Results) -> str:
    """Ratios to the best raw row of the version requests get, to version 1's (the network as published), and
    to the original package."""
    raw = results.extra.get("raw_best")
    raw_v1 = results.extra.get("raw_v1_best", raw)
    original = next((v for w, v, _ in results.rows if w.startswith("original")), None)

    def ratio(value: float, to: float | None, digits: int) -> str:
        return f"{value / to:.{digits}f}" if to else ""

    lines = [f"machine: {results.machine['cpu']}, {results.machine['cores']} cores, "
             f"{results.machine['memory_gb']} GiB, onnxruntime {results.machine['onnxruntime']}",
             "", "| measurement | value | x raw ONNX | x raw ONNX v1 | x original |", "|---|---|---|---|---|"]
    for what, value, unit in results.rows:
        if unit == "ECG/s":
            lines.append(f"| {what} | {value:,.1f} ECG/s | {ratio(value, raw, 2)} | {ratio(value, raw_v1, 2)} | "
                         f"{ratio(value, original, 1)} |")
        else:
            lines.append(f"| {what} | {shown(value, unit)} {unit} | | | |")
    return "\n".join(lines)
