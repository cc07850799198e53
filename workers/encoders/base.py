"""What every encoder gets: where its members go and how to name a sample's files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from model_store.manifest import ImageOutput, SignalOutput


class MemberSink(Protocol):
    def add(self, name: str, data: bytes) -> None:
        """One archive member, in the order members are added (`workers.archive.MemberZip`)."""


@dataclass(frozen=True)
class EncodeContext:
    output: SignalOutput | ImageOutput
    channel_names: list[str]
    seed: int
    num_samples: int
    members: MemberSink
    parts: Path
    chunk: int = 0
    # An annotated ECG job's measurements by sample index (`workers.ecg_measurements`), filled before `write` is
    # called for those samples: heart rate, intervals, axes, amplitudes and "fiducials" (name -> sample indices).
    measurements: dict[int, dict] = field(default_factory=dict)
    model_id: str = "unknown"
    model_version: int = 0

    @property
    def synthetic(self) -> str:
        """What every file says where its format has room: it holds no real person's data, and what made it."""
        made_by = f"DeepSynthBody model {self.model_id} version {self.model_version}"
        return f"SYNTHETIC data made by {made_by}; no real person"

    def stem(self, index: int, prefix: str | None = None) -> str:
        width = max(5, len(str(self.num_samples - 1)))
        return f"{prefix or self.output.file_prefix}_{index:0{width}d}"

    def part(self, suffix: str) -> Path:
        """This chunk's own file in the job's parts folder (a piece of a one-file format, scratch space)."""
        return self.parts / f"{self.chunk:05d}{suffix}"


class BatchWriter(Protocol):
    def write(self, samples: np.ndarray, start: int) -> None:
        """Add the archive members for samples start .. start+len(samples)-1 to the context's members."""


WriterFactory = Callable[[EncodeContext], BatchWriter]
