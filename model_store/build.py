"""Build the models whose recipes live here and whose artifacts are not installed yet."""

from __future__ import annotations

import logging
from pathlib import Path

from model_store.recipes import Recipe, recipes
from model_store.store import ModelStore

log = logging.getLogger(__name__)


def missing(store: ModelStore) -> list[Recipe]:
    installed = {e.manifest.key for e in store.entries()}
    return [r for r in recipes() if f"{r.model_id}:{r.version}" not in installed]


def build(store: ModelStore, force: bool = False) -> list[Path]:
    todo = recipes() if force else missing(store)
    built = []
    for recipe in todo:
        target = recipe.target(store.install_root)
        log.info("building %s:%s into %s", recipe.model_id, recipe.version, target)
        recipe.export(target)
        built.append(target)
    return built
