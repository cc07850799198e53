"""A filtered job (`"where"`): sample i is the i-th candidate, in candidate order, whose measurements match.

Candidates are drawn exactly as samples are (candidate c has the noise of sample index c of the job's seed), made
in the lanes batch by batch, and measured and selected in order in the encoder's thread: which candidates are kept
depends only on the seed and the filter, never on the batch size or how far the lanes ran ahead, so the same
request gives the same bytes. A job runs until it has its samples or has drawn its candidate budget; then it fails
saying how many it found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from workers import annotations, ecg_measurements
from workers.encoders.base import EncodeContext


class BudgetExceeded(Exception):
    """A filtered job drew its candidate budget without finding all its samples (not retried: it would again)."""


def matches(measured: dict[str, Any], where: dict[str, list[float | None]]) -> bool:
    """Whether every condition holds: a scalar measurement or a lead's (r_amplitude_V5) in its range, both bounds
    included; one not measured never matches."""
    values = ecg_measurements.flat(measured)
    for name, (low, high) in where.items():
        value = values.get(name)
        if value is None or (low is not None and value < low) or (high is not None and value > high):
            return False
    return True


def _matching(measured: dict[int, dict[str, Any]], start: int, count: int, where: dict[str, list[float | None]],
              limit: int) -> tuple[list[dict[str, Any]], list[int]]:
    """A batch's measurements, taken out of `measured`, and the offsets of its first `limit` matches."""
    batch = [measured.pop(start + offset) for offset in range(count)]
    return batch, [k for k, m in enumerate(batch) if matches(m, where)][:limit]


class Selection:
    def __init__(self, kind: str, ctx: EncodeContext, where: dict[str, list[float | None]], total: int, budget: int,
                 consume: Callable[[np.ndarray, int], None], processes: int) -> None:
        self.ctx, self.where, self.total, self.budget, self.consume_samples = ctx, where, total, budget, consume
        self.candidates: dict[int, dict[str, Any]] = {}  # measured, until their batch is selected
        self.measure = annotations.measurer(kind, ctx, processes, self.candidates)
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
        measured, kept = _matching(self.candidates, start, len(candidates), self.where, self.total - self.accepted)
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
            raise budget_exceeded(self.accepted, self.total, self.budget)
        drawn = self.last + 1
        return {"where": self.where, "candidates_drawn": drawn, "accepted": self.accepted,
                "acceptance": round(self.accepted / drawn, 4), "candidate_budget": self.budget}


ROWS, FOUND = ".rows", ".jsonl"  # a candidate chunk's kept candidates: raw rows, and one JSON line each


class CandidateSearch:
    """One chunk of a filtered request cut in candidate space: candidates first .. first+count-1 are drawn and
    measured in order, and those that match are kept (their rows in `<chunk>.rows`, their candidate index and
    measurements in `<chunk>.jsonl`, under the job's candidates folder) for the archive job, which writes the
    request's first `total` of them, in candidate order, as its samples.

    The search stops early once the samples are found: when it has `total` itself, or when every chunk before it has
    finished (`found_before` says how many they kept; None while one still runs) and they and it hold `total`
    between them. The first `total` matching candidates then lie in the finished chunks and this one's searched
    prefix, so the archive job's choice is the same whatever the number of chunks or workers, and whenever each
    stopped."""

    def __init__(self, kind: str, ctx: EncodeContext, where: dict[str, list[float | None]], total: int, first: int,
                 count: int, folder: Path, chunk: int, dtype: np.dtype,
                 found_before: Callable[[], int | None], report: Callable[[int], None], processes: int) -> None:
        self.where, self.total, self.first, self.end = where, total, first, first + count
        self.found_before, self.report, self.dtype = found_before, report, dtype
        self.candidates: dict[int, dict[str, Any]] = {}
        self.measure = annotations.measurer(kind, ctx, processes, self.candidates)
        self.accepted, self.searched_to = 0, first
        folder.mkdir(parents=True, exist_ok=True)
        # a retry searches again, from its first candidate
        self.rows, self.found = (folder / f"{chunk:05d}{ROWS}").open("wb"), (folder / f"{chunk:05d}{FOUND}").open("wb")
        self._before: int | None = None

    def enough(self) -> bool:
        if self.accepted >= self.total:
            return True
        if self._before is None:  # once every earlier chunk has finished, what they kept is final
            self._before = self.found_before()
        return self._before is not None and self._before + self.accepted >= self.total

    def plan(self, batch_size: int) -> Iterator[tuple[int, int]]:
        start = self.first
        while start < self.end and not self.enough():
            count = min(batch_size, self.end - start)
            yield start, count
            start += count

    def consume(self, candidates: np.ndarray, start: int) -> None:
        measured, kept = _matching(self.candidates, start, len(candidates), self.where, self.total - self.accepted)
        self.searched_to = start + len(candidates)
        if kept:
            self.rows.write(np.ascontiguousarray(candidates[kept], dtype=self.dtype).tobytes())
            self.found.write(b"".join(orjson.dumps({"candidate": start + k, "measurements": measured[k]}) + b"\n"
                                      for k in kept))
            self.accepted += len(kept)
        self.report(self.accepted)

    def finish(self) -> dict[str, Any]:
        self.rows.close()
        self.found.close()
        return {"first": self.first, "searched": self.searched_to - self.first, "accepted": self.accepted}


def found_candidates(folder: Path, chunk: int, sample_shape: tuple[int, ...], dtype: np.dtype,
                     ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A finished candidate chunk's kept candidates: their rows (memory-mapped) and their lines."""
    lines = [orjson.loads(line) for line in (folder / f"{chunk:05d}{FOUND}").read_bytes().splitlines()]
    if not lines:
        return np.empty((0, *sample_shape), dtype=dtype), []
    rows = np.memmap(folder / f"{chunk:05d}{ROWS}", dtype=dtype, mode="r", shape=(len(lines), *sample_shape))
    return rows, lines


def budget_exceeded(found: int, total: int, budget: int) -> BudgetExceeded:
    return BudgetExceeded(
        f"the filter kept {found} of the {total} samples asked for after drawing {budget} candidates (this job's "
        f"budget: {budget / max(total, 1):.0f} per sample, from the expected acceptance); widen the ranges or ask "
        "for fewer samples")
