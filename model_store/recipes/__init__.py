"""Recipes that build models from upstream checkpoints; `deepsynthbody models build` runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from model_store.manifest import Manifest


@dataclass(frozen=True)
class Recipe:
    model_id: str
    version: int
    category: str
    subcategory: str
    export: Callable[[Path], Manifest]

    def target(self, root: Path) -> Path:
        return root / self.category / self.subcategory / self.model_id / str(self.version)


def recipes() -> list[Recipe]:
    from model_store.recipes import pulse2pulse_ecg as ecg

    return [Recipe(ecg.MODEL_ID, version, ecg.CATEGORY, ecg.SUBCATEGORY, partial(ecg.export, version=version))
            for version in ecg.VERSIONS]
