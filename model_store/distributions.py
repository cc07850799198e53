"""What a model's measurements look like (built by a recipe, stored with it), and what a `where` filter can expect.

The API reads these documents to show them in the model card and to refuse, before queueing, a filter that almost
no sample would pass. Its expected acceptance is the share of the recipe's samples that meet every condition at
once, counted in the table of their measurements stored beside the document (`table`: a float32 .npy, one row per
sample, NaN where not measurable): measurements are not independent (a slow heart has a longer QT), so the product
of each condition's share overstates the README's example filter's acceptance 2.7 times (2.5 % for 0.95 %). A
document without a table falls back on that product, from its histograms. The job's manifest then reports the
acceptance it met.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from model_store.manifest import Manifest

_RECIPES = Path(__file__).with_name("recipes")
DOCUMENTS = {"pulse2pulse-ecg": _RECIPES / "pulse2pulse_ecg.distributions.json"}
ACCEPTANCE_FLOOR = 0.001  # a filter expected to keep fewer samples than this is refused at submit
BUDGET_FACTOR = 4  # a filtered job draws at most this many times the candidates its expected acceptance needs
BUDGET_SLACK = 256

Bounds = tuple[float | None, float | None]


def table_path(document_path: Path) -> Path:
    """Where a document's table of per-sample measurements lives: beside it."""
    return document_path.with_name(document_path.name.removesuffix(".distributions.json") + ".measurements.npy")


@lru_cache(maxsize=16)
def load(path: Path) -> dict[str, Any]:
    """A distributions document; its `table`, when it has one, gains the `path` of the rows (read on first use)."""
    document = json.loads(path.read_text())
    if "table" in document:
        document["table"]["path"] = str(path.with_name(document["table"]["file"]))
    return document


@lru_cache(maxsize=16)
def _rows(path: str) -> np.ndarray:
    return np.load(path)


def for_manifest(manifest: Manifest) -> dict[str, Any] | None:
    path = DOCUMENTS.get(manifest.id)
    return load(path) if manifest.measurements and path is not None and path.exists() else None


def share(entry: dict[str, Any], low: float | None, high: float | None) -> float:
    """The fraction of the model's samples whose measurement is in [low, high] (unmeasurable ones never are)."""
    histogram = entry.get("histogram")
    if not histogram:
        return 0.0
    edges, counts = histogram["edges"], histogram["counts"]
    low = -math.inf if low is None else low
    high = math.inf if high is None else high
    inside = 0.0
    for left, right, count in zip(edges, edges[1:], counts):
        if right > left:  # the part of the bin inside the range, its values taken as spread evenly
            inside += count * max(0.0, min(high, right) - max(low, left)) / (right - left)
        elif low <= left <= high:
            inside += count
    return entry["measurable"] * inside / max(1, sum(counts))


def expected_acceptance(document: dict[str, Any], where: dict[str, Bounds]) -> float:
    """The share of the recipe's samples that meet every condition (see the module's docstring)."""
    table = document.get("table")
    if table and "path" in table:
        rows = _rows(table["path"])
        kept = np.ones(len(rows), dtype=bool)
        for name, (low, high) in where.items():
            values = rows[:, table["columns"].index(name)]
            kept &= ~np.isnan(values)  # never measurable, never accepted
            if low is not None:  # compared in the table's precision: a bound equal to a value keeps it
                kept &= values >= values.dtype.type(low)
            if high is not None:
                kept &= values <= values.dtype.type(high)
        return float(kept.mean()) if len(rows) else 0.0
    probability = 1.0
    for name, (low, high) in where.items():
        probability *= share(document["measurements"][name], low, high)
    return probability


def candidate_budget(num_samples: int, acceptance: float) -> int:
    return math.ceil(BUDGET_FACTOR * num_samples / max(acceptance, ACCEPTANCE_FLOOR)) + BUDGET_SLACK
