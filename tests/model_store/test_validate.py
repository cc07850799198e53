"""`models validate` / `models add`: a contributed model folder, and one broken folder per failure."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from model_store.manifest import MANIFEST_FILE
from model_store.store import ModelStore, sha256_file
from model_store.validate import validate
from tests.conftest import ROOT
from tests.helpers.tiny_model import make_model, tiny_graph, tiny_manifest


def test_a_valid_folder_has_no_problems(tmp_path: Path) -> None:
    assert validate(make_model(tmp_path / "ok")) == []


def _corrupt_artifact(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["sha256"] = sha256_file(folder / "model.onnx")
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


BROKEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "no manifest": (lambda f: (f / MANIFEST_FILE).unlink(), "manifest.json is missing"),
    "manifest not json": (lambda f: (f / MANIFEST_FILE).write_text("{oops"), "not valid JSON"),
    "no licence": (lambda f: make_model(f, license=None), "`license` is missing"),
    "no citations": (lambda f: make_model(f, citations=[]), "`citations` is missing or empty"),
    "unknown body system": (lambda f: make_model(f, category="cardiac"), "manifest: category"),
    "format the kind cannot do": (lambda f: make_model(f, formats=["wfdb"]), "not available for image output"),
    "artifact missing": (lambda f: (f / "model.onnx").unlink(), "artifact model.onnx named by the manifest is missing"),
    "sha256 mismatch": (lambda f: make_model(f, sha256="0" * 64), "the manifest says 0000"),
    "onnx checker": (_corrupt_artifact, "ONNX checker rejects model.onnx"),
    "input names": (lambda f: make_model(f, inputs=[{"kind": "noise", "name": "z", "shape": [4, 8, 8],
                                                      "distribution": "normal"}]), "the graph has ['noise']"),
    "output shape": (lambda f: make_model(f, graph=tiny_graph(out_height=5)), "implies [1, 4, 8, 8]"),
    "output name": (lambda f: make_model(f, output=tiny_manifest("")["output"] | {"tensor": "rgb"}), "no output 'rgb'"),
    "variant missing": (lambda f: make_model(f, variants={"fp16": _variant("0" * 64)}),
                        "artifact model.fp16.onnx (fp16 variant) named by the manifest is missing"),
    "variant sha256 mismatch": (lambda f: _with_variant_file(f, "1" * 64), "sha256 of model.fp16.onnx is"),
    "variant of unknown precision": (lambda f: make_model(f, variants={"fp64": _variant("0" * 64)}), "variants.fp64"),
}


def _variant(sha: str) -> dict[str, str]:
    return {"artifact": "model.fp16.onnx", "sha256": sha, "description": "half precision"}


def _with_variant_file(folder: Path, sha: str) -> None:
    (folder / "model.fp16.onnx").write_bytes((folder / "model.onnx").read_bytes())
    make_model(folder, variants={"fp16": _variant(sha)})


def test_a_folder_with_a_valid_variant_has_no_problems(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "ok")
    (folder / "model.fp16.onnx").write_bytes((folder / "model.onnx").read_bytes())
    make_model(folder, variants={"fp16": _variant(sha256_file(folder / "model.fp16.onnx"))})
    assert validate(folder) == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_folder_gets_a_clear_message(tmp_path: Path, case: str) -> None:
    folder = make_model(tmp_path / "candidate")
    breaker, message = BROKEN[case]
    breaker(folder)
    problems = validate(folder)
    assert problems, case
    assert any(message in p for p in problems), problems


def test_cli_validate_and_add_install_a_new_version(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "candidate")
    env_data = tmp_path / "data"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deepsynthbody", *args], cwd=ROOT, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "DSB_DATA_DIR": str(env_data)})

    assert cli("models", "validate", str(folder)).returncode == 0
    first, second = cli("models", "add", str(folder)), cli("models", "add", str(folder))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "version 2" in second.stdout
    versions = [e.manifest.version for e in ModelStore([env_data / "models"]).entries() if e.manifest.id == "tiny-image"]
    assert versions == [1, 2]

    (folder / "model.onnx").write_bytes(b"broken")
    refused = cli("models", "add", str(folder))
    assert refused.returncode != 0 and "sha256" in refused.stderr and "was not added" in refused.stderr
