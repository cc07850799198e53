"""How long POST /models takes to answer for a small model: the unpacking, `models validate` in a child process
(its imports of onnx and onnxruntime are most of it) and keeping the contribution pending (README "Contributing a
model over HTTP").

    PYTHONPATH=. .venv/bin/python scripts/contribution-upload-latency.py [--uploads 5]

The app runs in process (Starlette's test client), keys off, in a temporary data dir; each upload is rejected after
it is timed, so the per-key limit of pending contributions never applies.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from deepsynthbody.core.settings import Settings
from tests.helpers.tiny_model import make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", auth="off", data_dir=tmp / "data"))
    model = make_model(tmp / "model", id="latency-probe", subcategory="latency-probe")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model, arcname=".")
    seconds = []
    with TestClient(app) as http:
        for _ in range(args.uploads):
            start = time.perf_counter()
            answer = http.post("/models", content=buffer.getvalue(), headers={"content-type": "application/gzip"})
            seconds.append(time.perf_counter() - start)
            assert answer.status_code == 201, answer.text
            http.post(f"/admin/contributions/{answer.json()['id']}/reject", json={"reason": "timed"})
    print(f"POST /models, {len(buffer.getvalue())}-byte archive: median {statistics.median(seconds):.2f} s, "
          f"min {min(seconds):.2f} s, max {max(seconds):.2f} s over {len(seconds)} uploads")


if __name__ == "__main__":
    main()
