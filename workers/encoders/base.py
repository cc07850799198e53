"""What every encoder gets: where to write and how to name a sample's files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from model_store.manifest import ImageOutput, SignalOutput


@dataclass(frozen=True)
class EncodeContext:
    output: SignalOutput | ImageOutput
    channel_names: list[str]
    seed: int
    num_samples: int
    directory: Path
    parts: Path
    chunk: int = 0

    def stem(self, index: int, prefix: str | None = None) -> str:
        width = max(5, len(str(self.num_samples - 1)))
        return f"{prefix or self.output.file_prefix}_{index:0{width}d}"

    @property
    def bundle_name(self) -> str:
        """Name of the single file that formats holding every sample in one file use."""
        return f"{self.output.file_prefix}s"

    def part(self, suffix: str) -> Path:
        """This chunk's piece of a one-file format; the archive joins the pieces in chunk order."""
        return self.parts / f"{self.chunk:05d}{suffix}"


class BatchWriter(Protocol):
    def write(self, samples: np.ndarray, start: int) -> None:
        """Write archive members for samples start .. start+len(samples)-1 into the context's directory."""


WriterFactory = Callable[[EncodeContext], BatchWriter]
