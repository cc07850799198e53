"""Find, resolve and install models: `<root>/<category>/<subcategory>/<id>/<version>/manifest.json`."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from deepsynthbody.core.errors import Conflict, ModelInvalid, NotFound
from deepsynthbody.core.settings import Settings
from model_store.catalog import BODY_SYSTEMS
from model_store.manifest import MANIFEST_FILE, Manifest

BUNDLED_ROOT = Path(__file__).parent / "models"


@dataclass(frozen=True)
class ModelEntry:
    manifest: Manifest
    directory: Path

    @property
    def artifact_path(self) -> Path:
        return self.directory / self.manifest.artifact

    def artifact_for(self, precision: str) -> Path:
        return self.directory / self.manifest.artifacts()[precision]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def unsafe_entries(folder: Path) -> list[str]:
    """What in a contributed folder must not be copied into the store, one message each: symbolic links (a link to
    /etc/shadow would install that file) and anything that is neither a file nor a folder (a FIFO blocks a copy)."""
    problems = []
    for directory, folders, files in os.walk(folder, followlinks=False):
        for name in sorted([*folders, *files]):
            path = Path(directory) / name
            relative = path.relative_to(folder)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                problems.append(f"{relative} is a symbolic link (to {os.readlink(path)}): put the file itself in the "
                                "folder; links are not installed")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                problems.append(f"{relative} is not a regular file or folder: remove it")
    return problems


def load_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelInvalid(f"{directory}: no {MANIFEST_FILE}") from exc
    except ValidationError as exc:
        raise ModelInvalid(f"{path}: invalid manifest: {exc}") from exc


class ModelStore:
    """Models installed under several roots; the first root is where new versions go."""

    RESCAN_SECONDS = 1.0  # a model added to a running service is seen within this; requests don't each walk the tree

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = [Path(r) for r in roots]
        self._cache: tuple[tuple[tuple[str, int], ...], list[ModelEntry]] | None = None
        self._scanned_at = -float("inf")

    @property
    def install_root(self) -> Path:
        return self.roots[0]

    def _manifest_paths(self) -> list[Path]:
        return [p for root in self.roots for p in sorted(root.glob(f"*/*/*/*/{MANIFEST_FILE}"))]

    def entries(self, fresh: bool = False) -> list[ModelEntry]:
        """Installed models, re-read only when a manifest appears, disappears or changes."""
        if not fresh and self._cache is not None and time.monotonic() - self._scanned_at < self.RESCAN_SECONDS:
            return self._cache[1]
        self._scanned_at = time.monotonic()
        paths = self._manifest_paths()
        fingerprint = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
        if self._cache is None or self._cache[0] != fingerprint:
            self._cache = (fingerprint, self._load(paths))
        return self._cache[1]

    @staticmethod
    def _load(paths: list[Path]) -> list[ModelEntry]:
        found: dict[str, ModelEntry] = {}
        for manifest_path in paths:
            try:
                entry = ModelEntry(load_manifest(manifest_path.parent), manifest_path.parent)
            except ModelInvalid:
                continue  # `models validate` reports these; serving skips them
            found.setdefault(entry.manifest.key, entry)
        return sorted(found.values(), key=lambda e: (e.manifest.category, e.manifest.subcategory, e.manifest.id, e.manifest.version))

    def catalog(self) -> dict[str, dict[str, list[ModelEntry]]]:
        tree: dict[str, dict[str, list[ModelEntry]]] = {system: {} for system in BODY_SYSTEMS}
        for entry in self.entries():
            tree[entry.manifest.category].setdefault(entry.manifest.subcategory, []).append(entry)
        return tree

    def resolve(self, category: str, subcategory: str, model: str | None = None, version: int | None = None) -> ModelEntry:
        """The requested model version; the latest when no version is named."""
        catalog = self.catalog()
        if category not in catalog:
            raise NotFound(f"unknown body system {category!r}", available=_available(catalog))
        candidates = catalog[category].get(subcategory, [])
        if not candidates:
            raise NotFound(f"no models under {category}/{subcategory}", available=_available(catalog))
        model_ids = sorted({e.manifest.id for e in candidates})
        if model is None:
            model = model_ids[0]
        matching = [e for e in candidates if e.manifest.id == model]
        if not matching:
            raise NotFound(f"no model {model!r} under {category}/{subcategory}", models=model_ids)
        if version is None:
            return max(matching, key=lambda e: e.manifest.version)
        for entry in matching:
            if entry.manifest.version == version:
                return entry
        raise NotFound(f"model {model!r} has no version {version}", versions=[e.manifest.version for e in matching])

    def get(self, model_id: str, version: int) -> ModelEntry:
        for entry in self.entries():
            if entry.manifest.id == model_id and entry.manifest.version == version:
                return entry
        raise NotFound(f"model {model_id}:{version} is not installed in {', '.join(map(str, self.roots))}")

    def install(self, source: Path, version: int | None = None) -> ModelEntry:
        """Copy a validated model folder in as a new version (the next free number unless given)."""
        source = Path(source)
        problems = unsafe_entries(source) if source.is_dir() else [f"{source} is not a folder"]
        if problems:
            raise ModelInvalid(f"{source} was not installed: {'; '.join(problems)}")
        manifest = load_manifest(source)
        taken = [e.manifest.version for e in self.entries(fresh=True) if e.manifest.id == manifest.id]
        version = version or max([manifest.version, *(v + 1 for v in taken)])
        if version in taken:
            raise Conflict(f"model {manifest.id} already has version {version}")
        target = self.install_root / manifest.category / manifest.subcategory / manifest.id / str(version)
        if not target.resolve().is_relative_to(self.install_root.resolve()):  # the manifest's slugs make this hold
            raise ModelInvalid(f"model {manifest.id} would be installed outside {self.install_root}")
        if target.exists():
            raise Conflict(f"{target} exists already")
        staging = target.with_name(f".{version}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, symlinks=True)  # a link made since the check above is copied as a link ...
        if problems := unsafe_entries(staging):  # ... and refused here, with nothing installed
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelInvalid(f"{source} changed while it was copied and was not installed: {'; '.join(problems)}")
        (staging / MANIFEST_FILE).write_text(manifest.model_copy(update={"version": version}).model_dump_json(indent=2))
        staging.rename(target)
        return ModelEntry(load_manifest(target), target)


def _available(catalog: dict[str, dict[str, list[ModelEntry]]]) -> dict[str, list[str]]:
    return {system: sorted(subs) for system, subs in catalog.items()}


def open_store(settings: Settings) -> ModelStore:
    """The store a service's settings name, searched in this order: the data dir's installed models,
    DSB_MODEL_DIRS, then the models bundled with the code."""
    return ModelStore([settings.installed_models_dir, *settings.model_dirs, BUNDLED_ROOT])
