"""What a model's measurements look like (built by a recipe, stored with it), and what a `where` filter can expect.

The API reads these documents to show them in the model card and to refuse, before queueing, a filter that almost
no sample would pass: its expected acceptance is the product of each condition's share of the model's samples
(from the histograms, measurements taken as independent: an estimate, which the job's manifest then corrects
with the acceptance it met).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from model_store.manifest import Manifest

_RECIPES = Path(__file__).with_name("recipes")
DOCUMENTS = {"pulse2pulse-ecg": _RECIPES / "pulse2pulse_ecg.distributions.json"}
ACCEPTANCE_FLOOR = 0.001  # a filter expected to keep fewer samples than this is refused at submit
BUDGET_FACTOR = 4  # a filtered job draws at most this many times the candidates its expected acceptance needs
BUDGET_SLACK = 256

Bounds = tuple[float | None, float | None]


@lru_cache(maxsize=16)
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def for_manifest(manifest: Manifest) -> dict[str, Any] | None:
    path = DOCUMENTS.get(manifest.id)
    return _load(path) if manifest.measurements and path is not None and path.exists() else None


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
    probability = 1.0
    for name, (low, high) in where.items():
        probability *= share(document["measurements"][name], low, high)
    return probability


def candidate_budget(num_samples: int, acceptance: float) -> int:
    return math.ceil(BUDGET_FACTOR * num_samples / max(acceptance, ACCEPTANCE_FLOOR)) + BUDGET_SLACK
