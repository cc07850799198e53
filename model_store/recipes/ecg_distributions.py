"""Build recipe: the distribution of an ECG model's measurements (quantiles and histograms), stored with its recipe.

Draws `count` samples of the model (seed 0, 12 leads), measures each as an annotated job does
(`workers.ecg_measurements.measure`) and writes, per scalar measurement: its unit, the fraction of samples where
it is measurable, quantiles and a histogram; and beside the document, the table of every sample's scalar
measurements (`<name>.measurements.npy`, float32, NaN where not measurable). The API reads the document to show what
is possible (model card) and counts in the table the share of samples a `where` filter keeps, before it queues a
job (`model_store.distributions`).

    python -m model_store.recipes.ecg_distributions --count 10000   # the committed file; CI builds small ones
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from model_store import distributions
from model_store.store import open_store

QUANTILES = (0, 0.5, 1, 2.5, 5, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 100)
BINS = 40
OUTPUT = Path(__file__).with_name("pulse2pulse_ecg.distributions.json")


def measure_model(model_dir: Path, count: int, seed: int = 0, batch: int = 64) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from model_store.store import load_manifest
    from workers import ecg_measurements, noise, postprocess

    manifest = load_manifest(model_dir)
    params = {"leads": 12}
    names = manifest.output.channel_names(params)
    session = ort.InferenceSession(str(model_dir / manifest.artifact), providers=["CPUExecutionProvider"])
    measured = []
    for start in range(0, count, batch):
        drawn = noise.draw(manifest.noise_inputs, seed, start, min(batch, count - start))
        (raw,) = session.run([manifest.output.tensor], drawn)
        samples = postprocess.to_samples(raw, manifest.output, params)
        rate = manifest.output.sampling_rate  # type: ignore[union-attr]
        measured += [ecg_measurements.measure(sample, names, rate) for sample in samples]
    return measured


def summarise(measured: list[dict[str, Any]]) -> dict[str, Any]:
    from workers.ecg_measurements import MEASUREMENTS

    summary = {}
    for name, (unit, definition) in MEASUREMENTS.items():
        values = np.array([m[name] for m in measured if m[name] is not None], dtype=np.float64)
        entry: dict[str, Any] = {"unit": unit, "definition": definition,
                                 "measurable": round(len(values) / len(measured), 4)}
        if len(values):
            counts, edges = np.histogram(values, bins=BINS)
            entry["quantiles"] = {f"{q:g}": round(float(np.percentile(values, q)), 1) for q in QUANTILES}
            entry["histogram"] = {"edges": [round(float(e), 2) for e in edges], "counts": counts.tolist()}
        summary[name] = entry
    return summary


def build(model_dir: Path, count: int, output: Path, seed: int = 0) -> dict[str, Any]:
    from model_store.store import load_manifest
    from workers.ecg_measurements import MEASUREMENTS, METHOD

    manifest = load_manifest(model_dir)
    started = time.perf_counter()
    measured = measure_model(model_dir, count, seed)
    columns = list(MEASUREMENTS)
    rows = np.array([[np.nan if m[name] is None else m[name] for name in columns] for m in measured], dtype=np.float32)
    table = distributions.table_path(output)
    np.save(table, rows)
    document = {
        "model": manifest.id, "version": manifest.version, "samples": count, "seed": seed, "leads": 12,
        "method": METHOD, "built_seconds": round(time.perf_counter() - started, 1), "platform": platform.platform(),
        "measurements": summarise(measured),
        "table": {"file": table.name, "columns": columns, "dtype": "float32", "null": "NaN", "rows": count},
    }
    output.write_text(json.dumps(document, indent=1) + "\n")
    return document


def main() -> None:
    from deepsynthbody.core.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    entry = open_store(get_settings()).resolve("cardiovascular", "ecg")
    document = build(entry.directory, args.count, args.output)
    print(f"{args.count} samples of {document['model']}:{document['version']} in {document['built_seconds']} s "
          f"-> {args.output}")


if __name__ == "__main__":
    main()
