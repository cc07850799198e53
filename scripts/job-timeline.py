"""Where the time of one end-to-end job goes (README "Performance"): each RQ job of the request (its chunks
and the archive step) from Redis, then the download, in seconds from the POST.

    .venv/bin/python scripts/job-timeline.py npy 4000 --repeat 2

Starts the same private service as `deepsynthbody bench` (a Redis, the API, one worker) and runs the
request the benchmark times, polling every 0.1 s like the benchmark's client.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepsynthbody import bench  # noqa: E402
from deepsynthbody.core.jobs import chunk_job_id  # noqa: E402
from deepsynthbody.core.settings import Settings  # noqa: E402


def timeline(client: httpx.Client, redis: Redis, fmt: str, n: int, sink: Path) -> None:
    started = time.time()
    job_id = client.post(bench.ECG, json={"num_samples": n, "seed": 1, "format": fmt}).json()["job_id"]
    while client.get(f"/jobs/{job_id}").json()["status"] not in ("finished", "failed", "canceled"):
        time.sleep(0.1)
    seen = time.time()
    with client.stream("GET", f"/jobs/{job_id}/result") as response, sink.open("wb") as out:
        for piece in response.iter_bytes(1 << 20):
            out.write(piece)
    downloaded = time.time()
    size = Settings().chunk_size
    chunks = [chunk_job_id(job_id, i) for i in range(-(-n // size))] if n > size else []
    for name, jid in [*((f"chunk {i}", c) for i, c in enumerate(chunks)), ("archive" if chunks else "job", job_id)]:
        job = Job.fetch(jid, connection=redis, serializer=JSONSerializer)
        start, end = job.started_at.timestamp() - started, job.ended_at.timestamp() - started
        print(f"  {name:>8}: {start:6.2f} -> {end:6.2f} s  ({end - start:.2f} s)")
    print(f"  finished seen at {seen - started:.2f} s; download {downloaded - seen:.2f} s "
          f"({sink.stat().st_size / 1e6:.0f} MB); "
          f"total {downloaded - started:.2f} s = {n / (downloaded - started):.1f} ECG/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", nargs="?", default="npy")
    parser.add_argument("n", nargs="?", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="dsb-timeline-"))
    try:
        bench._copy_models(Settings(), base / "data")
        service = bench.Service(base / "data", 1, max_samples=max(args.n, 10_000))
        try:
            with httpx.Client(base_url=service.url, timeout=120) as client:
                bench.end_to_end(client, {"num_samples": 2, "format": "npy"}, base / "download.zip")  # load the session
                for _ in range(args.repeat):
                    bench.settle()
                    print(f"{args.format}, {args.n} ECGs, 1 worker:")
                    timeline(client, Redis.from_url(service.redis.url), args.format, args.n, base / "download.zip")
        finally:
            service.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
