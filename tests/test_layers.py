"""The house's floors hold: import-linter's `lint-imports` checks the contracts in pyproject.toml (the ground floor
`deepsynthbody.core` imports nothing above it; nothing imports the entry points but the entry points; the workers
import no API code; the API no ONNX runtime), and every module of `deepsynthbody` outside the ground floor is
named an entry point there, so a new one cannot slip under the contracts."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import deepsynthbody
from tests.conftest import ROOT


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


def test_every_module_above_the_ground_floor_is_an_entry_point() -> None:
    [ground] = [c for c in _contracts() if c["source_modules"] == ["deepsynthbody.core"]]
    modules = {f"deepsynthbody.{m.name}" for m in pkgutil.iter_modules(deepsynthbody.__path__)} - {
        "deepsynthbody.core", "deepsynthbody.__main__"}
    assert modules, "no module found in deepsynthbody"
    assert modules <= set(ground["forbidden_modules"]), modules - set(ground["forbidden_modules"])
