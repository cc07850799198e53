"""Build the models whose recipes live here and whose artifacts are not installed yet."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from model_store.recipes import Recipe, recipes
from model_store.store import ModelStore

log = logging.getLogger(__name__)

_EXPORT_LOGGERS = ("torch", "torch.onnx", "onnx", "onnxscript")


def missing(store: ModelStore) -> list[Recipe]:
    installed = {e.manifest.key for e in store.entries()}
    return [r for r in recipes() if f"{r.model_id}:{r.version}" not in installed]


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporters' warnings (deprecations in the upstream model code, torch.onnx's constant folding notes)
    say nothing a user can act on: hidden while a recipe runs, and only then."""
    loggers = [logging.getLogger(name) for name in _EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def build(store: ModelStore, force: bool = False) -> list[Path]:
    todo = recipes() if force else missing(store)
    built = []
    for recipe in todo:
        target = recipe.target(store.install_root)
        began = time.monotonic()
        with _quiet_export():
            recipe.export(target)
        log.info("built %s:%s in %.1f s into %s", recipe.model_id, recipe.version, time.monotonic() - began, target)
        built.append(target)
    return built
