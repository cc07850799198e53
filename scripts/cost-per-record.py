"""Where a worker's CPU time goes per ECG, stage by stage, on one core (README "Performance").

    .venv/bin/python scripts/cost-per-record.py

Times the worker's own functions on the served ECG version: drawing the noise, one single-threaded
onnxruntime run, the int16 post-processing, each format's encoder writing into a chunk zip (sha256 and
zip entry included), and the sha256 + CRC of a 4,000-ECG `.npy` member.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model_store.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepsynthbody.core.settings import Settings  # noqa: E402
from model_store.build import build  # noqa: E402
from workers import archive, noise, runtime  # noqa: E402
from workers.encoders import ENCODERS, EncodeContext  # noqa: E402

BATCH = 32


def per_call(step: Callable[[], object], seconds: float = 3.0) -> float:
    step()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        calls += 1
    return (time.perf_counter() - started) / calls


def main() -> None:
    settings = Settings(ort_threads=1)
    build(open_store(settings))
    entry = open_store(settings).resolve("cardiovascular", "ecg")
    model = runtime.load(entry, settings)
    params = {"leads": 8}
    inputs = noise.draw(entry.manifest.noise_inputs, 1, 0, BATCH)
    raw = model.run(inputs, params)
    samples = model.postprocess(raw, params)
    print(f"{entry.manifest.key}, batches of {BATCH}, one core; ms per ECG:")
    print(f"  noise: {1000 * per_call(lambda: noise.draw(entry.manifest.noise_inputs, 1, 0, BATCH)) / BATCH:.3f}")
    print(f"  onnxruntime run (1 thread): {1000 * per_call(lambda: model.run(inputs, params)) / BATCH:.3f}")
    print(f"  int16 post-processing: {1000 * per_call(lambda: model.postprocess(raw, params)) / BATCH:.3f}")
    output = entry.manifest.output
    with tempfile.TemporaryDirectory() as scratch:
        for fmt in ("wfdb", "csv", "asc", "json"):
            part = Path(scratch) / f"{fmt}.members.zip"
            with archive.MemberZip(part, "stored") as members:
                ctx = EncodeContext(output, output.channel_names(params), 1, 10**6, members, Path(scratch))
                writer = ENCODERS[fmt](ctx)
                start = 0

                def encode() -> None:
                    nonlocal start
                    writer.write(samples, start)
                    start += BATCH

                where = "its piece of the one .ndjson" if fmt == "json" else "the chunk zip"
                print(f"  encode {fmt} into {where}: {1000 * per_call(encode) / BATCH:.3f}")
    data = np.zeros((4000, 5000, 8), dtype=np.int16).tobytes()
    print(f"sha256 + CRC-32 of a 4,000-ECG .npy member ({len(data) / 1e6:.0f} MB): "
          f"{per_call(lambda: (hashlib.sha256(data).digest(), zlib.crc32(data)), 2.0):.2f} s")


if __name__ == "__main__":
    main()
