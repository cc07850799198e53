"""Encoding alone, per per-record format: the encoder thread against the worker's processes (docs/performance.md).

    .venv/bin/python scripts/encoding-processes.py [--processes N] [--n 1024] [--json out.json]

A GPU worker makes ECGs faster than one core encodes them, so it encodes per-record formats in processes
(`workers/encoding_processes.py`). This times what a worker's encoder does with batches of 512 samples already made
(the GPU's part taken away): the format's writer into a chunk's zip, sha256s included, in the encoder thread alone and
in N processes (default: one per core), 3 runs of each taking turns, the median of each; and checks that every zip
holds the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepsynthbody.core.settings import Settings  # noqa: E402
from model_store.build import build  # noqa: E402
from model_store.store import open_store  # noqa: E402
from workers import archive, measuring_processes, noise, runtime  # noqa: E402
from workers.encoders import ENCODERS, EncodeContext  # noqa: E402
from workers.encoding_processes import PieceWriter  # noqa: E402

BATCH = 512
REPEATS = 3
FORMATS = {"wfdb": 1, "csv": 1, "asc": 1, "edf": 1, "dicom": 1, "png": 16, "pdf": 16}  # format: share of --n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n", type=int, default=1024, help="ECGs per format (printouts: a sixteenth)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = Settings()
    build(open_store(settings))
    entry = open_store(settings).resolve("cardiovascular", "ecg")
    model = runtime.load(entry, settings)
    params = {"leads": 8}
    samples = np.concatenate([model.postprocess(model.run(noise.draw(entry.manifest.noise_inputs, 1, s, 64), params),
                                                params) for s in range(0, BATCH, 64)])
    output = entry.manifest.output
    measuring_processes.prepare(args.processes, samples.nbytes)
    command = "scripts/encoding-processes.py " + " ".join(sys.argv[1:])
    results: dict[str, object] = {"command": command, "machine": {"cores": os.cpu_count()}, "model": entry.manifest.key,
                                  "processes": args.processes, "batch": BATCH, "formats": {}}
    print(f"{entry.manifest.key}, 8 leads, batches of {BATCH}, {os.cpu_count()} cores; ECG/s encoded into a chunk zip")
    print(f"| format | ECGs | encoder thread | {args.processes} processes | ratio | same bytes |\n|---|---|---|---|---|---|")
    for fmt, share in FORMATS.items():
        n = max(BATCH // 8, args.n // share)
        batch = samples[:min(BATCH, n)]
        timed: dict[int, list[float]] = {0: [], args.processes: []}
        zips = []
        for _ in range(REPEATS):  # alternating, the median of each
            for processes in timed:
                with tempfile.TemporaryDirectory() as scratch:
                    part = Path(scratch) / f"00000{fmt}.members.zip"
                    with archive.MemberZip(part, "stored") as members:
                        ctx = EncodeContext(output, output.channel_names(params), 1, n, members, Path(scratch))
                        writer = PieceWriter(fmt, ctx, processes, "stored") if processes else ENCODERS[fmt](ctx)
                        started = time.perf_counter()
                        for start in range(0, n, len(batch)):
                            writer.write(batch[:n - start], start)
                        timed[processes].append(n / (time.perf_counter() - started))
                    zips.append(part.read_bytes())
        rates = [float(np.median(values)) for values in timed.values()]
        row = {"ECGs": n, "runs": REPEATS, "encoder thread ECG/s": round(rates[0]), "processes ECG/s": round(rates[1]),
               "ratio": round(rates[1] / rates[0], 2), "same bytes": len(set(zips)) == 1}
        results["formats"][fmt] = row  # type: ignore[index]
        print(f"| {fmt} | {n:,} | {rates[0]:,.0f} | {rates[1]:,.0f} | {row['ratio']:.2f} | {row['same bytes']} |",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
