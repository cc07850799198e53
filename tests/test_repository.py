"""A clone is complete by itself: no test, command or build reads a file outside the repository."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

from model_store.recipes.singan_seg import GI_TRACT_IMAGE
from tests.conftest import ROOT

# A path into the developers' shared folder beside the clone, as code would spell it.
OUTSIDE = re.compile(r"\.\./shared/|parents?\[?\d*\]?\s*/\s*[\"']shared[\"']|\.parent\s*/\s*[\"']shared[\"']")


def _tracked_text_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    names = [n for n in listing.decode().split("\0") if n]
    return [n for n in names if (ROOT / n).is_file() and b"\0" not in (ROOT / n).read_bytes()[:4096]]


def test_no_tracked_file_points_outside_the_clone() -> None:
    offenders = [name for name in _tracked_text_files() if OUTSIDE.search((ROOT / name).read_text(errors="replace"))]
    assert offenders == [], f"these files name a path outside the repository: {offenders}"


def test_the_gi_tract_training_image_is_in_the_repository_with_its_source() -> None:
    training = json.loads((ROOT / "model_store/models/digestive/gi-tract/singan-seg-polyp/1/training.json").read_text())
    assert hashlib.sha256(GI_TRACT_IMAGE.read_bytes()).hexdigest() == training["image_sha256"]
    source = (GI_TRACT_IMAGE.parent / "SOURCE.md").read_text()
    for credit in ("CC BY 4.0", "HyperKvasir", "SinGAN-Seg", "MIT", training["image_sha256"]):
        assert credit in source, credit
