"""The downloadable result: a zip of the data files plus manifest.json, renamed into place when complete."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from deepsynthbody.jobs import JobPaths

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # data members carry no wall-clock time: same request, same bytes
_CHUNK = 1 << 20
_COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}


def _add(archive: zipfile.ZipFile, source: Path, name: str, compression: int) -> dict[str, Any]:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    digest = hashlib.sha256()
    with source.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
        while block := src.read(_CHUNK):
            digest.update(block)
            dst.write(block)
    return {"name": name, "bytes": source.stat().st_size, "sha256": digest.hexdigest()}


def write(paths: JobPaths, members: list[tuple[Path, str]], manifest: dict[str, Any], compression: str) -> dict[str, Any]:
    """Zip `members` (source, name) in order, then manifest.json with every member's sha256."""
    mode = _COMPRESSION[compression]
    with zipfile.ZipFile(paths.archive_partial, "w", allowZip64=True) as archive:
        files = [_add(archive, source, name, mode) for source, name in members]
        manifest = {**manifest, "files": files}
        info = zipfile.ZipInfo("manifest.json", date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, json.dumps(manifest, indent=2))
    paths.manifest.write_text(json.dumps(manifest, indent=2))
    os.replace(paths.archive_partial, paths.archive)
    return manifest


def member_files(directory: Path) -> list[tuple[Path, str]]:
    return [(path, path.name) for path in sorted(directory.iterdir()) if path.is_file()]
