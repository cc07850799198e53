"""`models validate` / `models add` of a folder that reaches outside itself: symbolic links, `..`, absolute paths,
ids that are paths. Each is refused with one line per problem, and nothing is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deepsynthbody.core.errors import ModelInvalid
from model_store.manifest import MANIFEST_FILE
from model_store.store import ModelStore, sha256_file
from model_store.validate import validate
from tests.conftest import ROOT
from tests.helpers.tiny_model import make_model

SECRET = b"root:$6$not-a-real-hash:19000:0:99999:7:::\n"


def _manifest(folder: Path, **changes: object) -> None:
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def _artifact_is_a_link(folder: Path) -> None:
    """model.onnx is a link to a valid model outside the folder: every check but the link's passes."""
    outside = folder.parent / "outside.onnx"
    (folder / "model.onnx").rename(outside)
    (folder / "model.onnx").symlink_to(outside)


def _secret_is_linked(folder: Path) -> None:
    (folder.parent / "shadow").write_bytes(SECRET)
    (folder / "notes.txt").symlink_to(folder.parent / "shadow")


def _folder_is_linked(folder: Path) -> None:
    (folder.parent / "etc").mkdir()
    (folder.parent / "etc" / "shadow").write_bytes(SECRET)
    (folder / "extra").symlink_to(folder.parent / "etc")


def _variant(folder: Path, name: str) -> None:
    _manifest(folder, variants={"fp16": {"artifact": name, "sha256": sha256_file(folder / "model.onnx"),
                                         "description": "the same file"}})


UNSAFE: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "artifact is a symlink": (_artifact_is_a_link, ["model.onnx is a symbolic link"]),
    "symlink to a secret": (_secret_is_linked, ["notes.txt is a symbolic link"]),
    "symlinked folder": (_folder_is_linked, ["extra is a symbolic link"]),
    "fifo": (lambda f: os.mkfifo(f / "pipe"), ["pipe is not a regular file or folder"]),
    "artifact ../x": (lambda f: _manifest(f, artifact="../model.onnx"), ["manifest: artifact:", "no '..'"]),
    "absolute artifact": (lambda f: _manifest(f, artifact="/etc/shadow"), ["manifest: artifact:", "no '/'"]),
    "variant ../x": (lambda f: _variant(f, "../model.onnx"), ["manifest: variants.fp16.artifact:"]),
    "hidden artifact": (lambda f: _manifest(f, artifact=".model.onnx"), ["not starting with '.'"]),
    "id with a slash": (lambda f: _manifest(f, id="tiny/../../../escape"), ["manifest: id:", "names a folder"]),
    "id ..": (lambda f: _manifest(f, id=".."), ["manifest: id:"]),
    "subcategory absolute": (lambda f: _manifest(f, subcategory="/tmp"), ["manifest: subcategory:"]),
    "category not a body system": (lambda f: _manifest(f, category="../cardiovascular"), ["manifest: category:"]),
    "file prefix with a path": (lambda f: _manifest(f, output=json.loads((f / MANIFEST_FILE).read_text())["output"]
                                                    | {"file_prefix": "../../evil"}), ["manifest: output.image.file_prefix:"]),
    "two problems": (lambda f: (_secret_is_linked(f), _manifest(f, id="a/b")),
                     ["notes.txt is a symbolic link", "manifest: id:"]),
}


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepsynthbody", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "DSB_DATA_DIR": str(data)})


def _installed(data: Path) -> list[Path]:
    root = data / "models"
    return sorted(p for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_validate_names_each_unsafe_thing_on_its_own_line(tmp_path: Path, case: str) -> None:
    folder = make_model(tmp_path / "candidate")
    breaker, messages = UNSAFE[case]
    breaker(folder)
    problems = validate(folder)
    for message in messages:
        assert sum(message in p for p in problems) == 1, (message, problems)
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("case", ["artifact is a symlink", "symlink to a secret", "absolute artifact",
                                  "id with a slash", "two problems"])
def test_models_add_refuses_and_installs_nothing(tmp_path: Path, case: str) -> None:
    folder = make_model(tmp_path / "candidate")
    breaker, messages = UNSAFE[case]
    breaker(folder)
    data = tmp_path / "data"
    refused = _cli(data, "models", "add", str(folder))
    assert refused.returncode != 0, refused.stdout
    lines = refused.stderr.strip().splitlines()
    for message in messages:
        assert sum(message in line for line in lines) == 1, (message, lines)
    assert "was not added" in lines[-1]
    assert _installed(data) == []
    assert SECRET not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "data" in p.parts)


def test_the_store_refuses_links_even_unvalidated(tmp_path: Path) -> None:
    """`ModelStore.install` checks again: links are neither followed nor copied, whoever calls it."""
    folder = make_model(tmp_path / "candidate")
    _secret_is_linked(folder)
    store = ModelStore([tmp_path / "data" / "models"])
    with pytest.raises(ModelInvalid, match="notes.txt is a symbolic link"):
        store.install(folder)
    assert _installed(tmp_path / "data") == []


def test_a_safe_folder_is_still_added(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "candidate")
    (folder / "README.md").write_text("how it was trained\n")
    (folder / "docs").mkdir()
    (folder / "docs" / "card.json").write_text("{}")
    data = tmp_path / "data"
    added = _cli(data, "models", "add", str(folder))
    assert added.returncode == 0, added.stderr
    [entry] = ModelStore([data / "models"]).entries()
    assert (entry.directory / "docs" / "card.json").read_text() == "{}"
    assert not any(p.is_symlink() for p in entry.directory.rglob("*"))
