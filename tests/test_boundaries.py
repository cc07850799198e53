"""The API never loads onnxruntime; workers never load FastAPI."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _loaded(statement: str, module: str) -> bool:
    code = f"import sys; {statement}; print({module!r} in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip() == "True"


def test_api_imports_no_onnxruntime() -> None:
    assert not _loaded("import app.main, app.routes.jobs, app.streaming", "onnxruntime")


def test_workers_import_no_fastapi() -> None:
    for module in ("fastapi", "starlette"):
        assert not _loaded("import workers.tasks, workers.worker", module)
