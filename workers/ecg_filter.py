"""A filtered job (`"where"`): sample i is the i-th candidate, in candidate order, whose measurements match.

Candidates are drawn exactly as samples are (candidate c has the noise of sample index c of the job's seed), made
and measured in the lanes batch by batch, and selected in order by the encoder's thread: which candidates are kept
depends only on the seed and the filter, never on the batch size or how far the lanes ran ahead, so the same
request gives the same bytes. A job runs until it has its samples or has drawn its candidate budget; then it fails
saying how many it found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from workers import annotations
from workers.encoders.base import EncodeContext


class BudgetExceeded(Exception):
    """A filtered job drew its candidate budget without finding all its samples (not retried: it would again)."""


def matches(measured: dict[str, Any], where: dict[str, list[float | None]]) -> bool:
    for name, (low, high) in where.items():
        value = measured[name]
        if value is None or (low is not None and value < low) or (high is not None and value > high):
            return False
    return True


class Selection:
    def __init__(self, kind: str, ctx: EncodeContext, where: dict[str, list[float | None]], total: int, budget: int,
                 consume: Callable[[np.ndarray, int], None]) -> None:
        self.ctx, self.where, self.total, self.budget, self.consume_samples = ctx, where, total, budget, consume
        self.candidates: dict[int, dict[str, Any]] = {}  # measured, until their batch is selected
        self.measure = annotations.measurer(kind, ctx, self.candidates)
        self.accepted = 0
        self.last = -1  # the candidate index of the last sample kept

    def plan(self, batch_size: int) -> Iterator[tuple[int, int]]:
        """Batches of candidates, until enough are kept (the lanes may have made a few more: they are dropped)."""
        start = 0
        while self.accepted < self.total and start < self.budget:
            count = min(batch_size, self.budget - start)
            yield start, count
            start += count

    def consume(self, candidates: np.ndarray, start: int) -> None:
        measured = [self.candidates.pop(start + offset) for offset in range(len(candidates))]
        kept = [k for k, m in enumerate(measured) if matches(m, self.where)][:self.total - self.accepted]
        if not kept:
            return
        first = self.accepted
        for n, k in enumerate(kept):
            self.ctx.measurements[first + n] = measured[k]
        self.accepted += len(kept)
        self.last = start + kept[-1]
        self.consume_samples(candidates[kept], first)

    def finish(self) -> dict[str, Any]:
        """What the manifest says of the selection; raises BudgetExceeded when the samples were not all found."""
        if self.accepted < self.total:
            raise BudgetExceeded(
                f"the filter kept {self.accepted} of the {self.total} samples asked for after drawing "
                f"{self.budget} candidates (this job's budget: {self.budget / max(self.total, 1):.0f} per sample, "
                "from the expected acceptance); widen the ranges or ask for fewer samples")
        drawn = self.last + 1
        return {"where": self.where, "candidates_drawn": drawn, "accepted": self.accepted,
                "acceptance": round(self.accepted / drawn, 4), "candidate_budget": self.budget}
