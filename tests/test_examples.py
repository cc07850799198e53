"""The examples in examples/ run against a live service (API + worker) and read the very samples of their archive.

Each submits, follows the job's progress, downloads its archive and reads the ECGs into its language's structure,
then prints one JSON line: the job, the shape it read and the first time sample of the first ECG, which must be
the archive's. A missing interpreter fails the test (CI installs Node and R: .ci/run); it is never skipped.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT

EXAMPLES = {
    "python": ([sys.executable, "examples/python/ecg_numpy.py"], "python3 (the suite's own)"),
    "js": (["node", "examples/js/ecg_typed_array.mjs"], "node: apt-get install nodejs"),
    "r": (["Rscript", "examples/r/ecg_matrix.R"], "Rscript: apt-get install r-base-core r-cran-httr2 r-cran-jsonlite"),
}
COUNT = 9


def run_example(language: str, api_url: str) -> tuple[dict, str]:
    command, install = EXAMPLES[language]
    if shutil.which(command[0]) is None:
        pytest.fail(f"the {language} example needs {install}")
    env = {"PATH": __import__("os").environ["PATH"], "HOME": str(ROOT), "DSB_URL": api_url}
    done = subprocess.run([*command, str(COUNT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def archive(api_url: str, job_id: str) -> zipfile.ZipFile:
    response = httpx.get(f"{api_url}/jobs/{job_id}/result", timeout=60)
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(response.content))


@pytest.mark.parametrize("language", ["python", "js"])
def test_the_example_reads_the_archives_array(language: str, api_url: str, worker: subprocess.Popen[bytes]) -> None:
    result, log = run_example(language, api_url)
    ecgs = np.load(io.BytesIO(archive(api_url, result["job_id"]).read("ecgs.npy")))
    assert result["shape"] == list(ecgs.shape) and ecgs.shape[0] == COUNT and result["dtype"] == "int16"
    assert result["first_row"] == ecgs[0, 0].tolist()
    followed = [line for line in log.splitlines() if line.startswith(("state: ", "progress: ", "end: "))]
    assert followed[0].startswith("state: ") and followed[-1] == f"end: finished {COUNT}/{COUNT}", log  # over SSE


def test_the_r_example_reads_each_ecg_into_a_matrix(api_url: str, worker: subprocess.Popen[bytes]) -> None:
    result, log = run_example("r", api_url)
    zf = archive(api_url, result["job_id"])
    first = np.loadtxt(io.BytesIO(zf.read("ecg_00000.csv")), delimiter=",", skiprows=1, dtype=np.int64)
    assert result["shape"] == [COUNT, *first.shape] and result["dtype"] == "integer"
    assert result["first_row"] == first[0].tolist()
    assert f"finished {COUNT}/{COUNT}" in log, log  # followed with the long poll
