"""Build recipe: the distribution of an ECG model's measurements (quantiles and histograms), stored with its recipe.

Draws `count` samples of the model (seed 0, 12 leads), measures each as an annotated job does
(`workers.ecg_measurements.measure`) and writes, per measurement a filter can name (the scalar ones and each lead's
R and S amplitude, r_amplitude_V5): its unit, the fraction of samples where it is measurable, quantiles and a
histogram; and beside the document, the table of every sample's measurements, one column each in the document's
order (`<name>.measurements.npy`, float32, NaN where not measurable). The API reads the document to show what
is possible (model card) and counts in the table the share of samples a `where` filter keeps, before it queues a
job (`model_store.distributions`). The document also holds the measurements' agreement with an independent
delineation of 60 of the model's ECGs (`model_store.recipes.ecg_agreement`), the model card's `agreement`.

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
from model_store.recipes import ecg_agreement
from model_store.store import open_store

QUANTILES = (0, 0.5, 1, 2.5, 5, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 100)
BINS = 40
OUTPUT = Path(__file__).with_name("pulse2pulse_ecg.distributions.json")
PARAMS = {"leads": 12}  # every lead the model can give (as `ecg_agreement.ecgs` draws them)


def measure_model(model_dir: Path, count: int, seed: int = 0) -> list[dict[str, Any]]:
    from workers.ecg_measurements import measure

    return [measure(sample, names, rate)
            for samples, names, rate in ecg_agreement.ecgs(model_dir, count, seed) for sample in samples]


def columns(channel_names: list[str]) -> dict[str, dict[str, str]]:
    """Every measurement a filter can name, in the table's order: the scalar ones, then each lead's R and S
    amplitude (`lead` says which lead it needs)."""
    from workers.ecg_measurements import MEASUREMENTS, PER_LEAD, lead_measurement

    described = {name: {"unit": unit, "definition": definition} for name, (unit, definition) in MEASUREMENTS.items()}
    for name, (unit, definition) in PER_LEAD.items():
        for lead in channel_names:
            described[lead_measurement(name, lead)] = {
                "unit": unit, "definition": f"{definition.removesuffix(', per lead')}, lead {lead}", "lead": lead}
    return described


def summarise(measured: list[dict[str, float | None]], described: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Per measurement of `described` (`measured`: each sample's, `flat`): the share measurable, quantiles and a
    histogram."""
    summary = {}
    for name, description in described.items():
        values = np.array([m[name] for m in measured if m.get(name) is not None], dtype=np.float64)
        entry: dict[str, Any] = {**description, "measurable": round(len(values) / len(measured), 4)}
        if len(values):
            counts, edges = np.histogram(values, bins=BINS)
            entry["quantiles"] = {f"{q:g}": round(float(np.percentile(values, q)), 1) for q in QUANTILES}
            entry["histogram"] = {"edges": [round(float(e), 2) for e in edges], "counts": counts.tolist()}
        summary[name] = entry
    return summary


def build(model_dir: Path, count: int, output: Path, seed: int = 0,
          agreement_samples: int = ecg_agreement.SAMPLES) -> dict[str, Any]:
    from model_store.store import load_manifest
    from workers.ecg_measurements import METHOD, flat

    manifest = load_manifest(model_dir)
    started = time.perf_counter()
    measured = measure_model(model_dir, count, seed)
    described = columns(manifest.output.channel_names(PARAMS))
    values = [flat(m) for m in measured]
    rows = np.array([[np.nan if v.get(name) is None else v[name] for name in described] for v in values],
                    dtype=np.float32)
    table = distributions.table_path(output)
    np.save(table, rows)
    document = {
        "model": manifest.id, "version": manifest.version, "samples": count, "seed": seed, "leads": PARAMS["leads"],
        "method": METHOD, "built_seconds": round(time.perf_counter() - started, 1), "platform": platform.platform(),
        "measurements": summarise(values, described),
        "table": {"file": table.name, "columns": list(described), "dtype": "float32", "null": "NaN", "rows": count},
        "agreement": ecg_agreement.agreement(model_dir, agreement_samples),
    }
    output.write_text(json.dumps(document, indent=1) + "\n")
    return document


def main() -> None:
    from deepsynthbody.core.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--agreement-samples", type=int, default=ecg_agreement.SAMPLES,
                        help="ECGs (of seed %(default)s) compared with the reference delineation for the card's "
                        "`agreement`" % {"default": ecg_agreement.SEED})
    args = parser.parse_args()
    entry = open_store(get_settings()).resolve("cardiovascular", "ecg")
    document = build(entry.directory, args.count, args.output, agreement_samples=args.agreement_samples)
    print(f"{args.count} samples of {document['model']}:{document['version']} in {document['built_seconds']} s "
          f"-> {args.output}")


if __name__ == "__main__":
    main()
