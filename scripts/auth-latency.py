"""Enqueue latency with API keys off and on (and with per-key limits and a disk budget): the cost of the auth check
(one Redis round trip, a Lua script) and of the limits' round trip on the busiest route.

    .venv/bin/python scripts/auth-latency.py [--clients 50] [--requests 2000] [--rounds 2]

Each configuration gets its own `deepsynthbody api` process on a private Redis and a queue no worker serves,
loaded by `clients` keep-alive connections posting back to back; configurations alternate, `rounds` times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepsynthbody.core import keys  # noqa: E402
from deepsynthbody.core.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

ECG = "/generate/cardiovascular/ecg"


async def load(url: str, key: str | None, clients: int, per_client: int) -> list[float]:
    import aiohttp

    latencies: list[float] = []
    body = json.dumps({"num_samples": 1, "format": "npy"}).encode()
    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as http:
        ready = asyncio.Barrier(clients)

        async def one_client() -> None:
            for i in range(per_client + 1):
                if i == 1:
                    await ready.wait()
                started = time.perf_counter()
                async with http.post(ECG, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(await response.text())
                if i:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def api(redis_url: str, data_dir: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DSB_")} | {
        "DSB_REDIS_URL": redis_url, "DSB_DATA_DIR": str(data_dir), "DSB_QUEUE": "latency", **env}
    process = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "--log-level", "WARNING", "api", "--port", str(port)],
                               cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the API did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        data_dir = Path(os.environ.get("DSB_DATA_DIR", ROOT / "data")).resolve()  # its built models
        redis = Redis.from_url(server.url)
        configurations = {  # environment, limits of the key (None: no key)
            "auth off": ({"DSB_AUTH": "off"}, None),
            "auth on": ({"DSB_AUTH": "required"}, {}),
            "auth on, key with limits, disk budget": ({"DSB_AUTH": "required", "DSB_RESULTS_MAX_BYTES": str(10**18)},
                                                      {"samples_per_day": 10**12, "max_active_jobs": 10**9}),
        }
        results: dict[str, list[float]] = {name: [] for name in configurations}
        for _ in range(args.rounds):
            for name, (env, limits) in configurations.items():
                redis.flushdb()  # each on an empty Redis
                key = None if limits is None else keys.create(redis, "bench", **limits)[0]
                process, url = api(server.url, data_dir, **env)
                try:
                    asyncio.run(load(url, key, args.clients, 20))  # warm up
                    results[name] += asyncio.run(load(url, key, args.clients, max(1, args.requests // args.clients)))
                finally:
                    process.terminate()
                    process.wait(timeout=30)
        for name, latencies in results.items():
            latencies.sort()
            p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
            print(f"{name:40s} p50 {p(0.5):6.1f} ms  p99 {p(0.99):6.1f} ms  mean {statistics.mean(latencies) * 1000:6.1f} ms"
                  f"  ({len(latencies)} requests, {args.clients} clients)")


if __name__ == "__main__":
    main()
