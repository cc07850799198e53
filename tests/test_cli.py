"""The command line: every mistake is one line saying what to fix, and --help shows what options do and default to."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, environment, free_port, nvidia_smi


def deepsynthbody(settings: Settings, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepsynthbody", *args], cwd=cwd, env=environment(settings, **env),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--param", "leads=10"], ["--param leads", "8 or 12"]),
        (["--param", "leads=twelve"], ["--param leads", "8 or 12"]),
        (["--param", "leads"], ["NAME=VALUE"]),
        (["--param", "lead=12"], ["no such parameter", "leads"]),
        (["--version", "7"], ["no version 7", "1, 2"]),
    ],
)
def test_a_bad_preview_request_is_one_line(settings: Settings, ecg_model_dir: Path, tmp_path: Path,
                                           args: list[str], says: list[str]) -> None:
    done = deepsynthbody(settings, "models", "preview", "cardiovascular/ecg", "--out", str(tmp_path / "x.png"), *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepsynthbody models preview: error: "), done.stderr
    assert all(s in lines[0] for s in says), lines[0]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("model", ["cardio/ecg", "cardiovascular/eeg", "ecg"])
def test_an_unknown_model_is_one_line_naming_what_exists(settings: Settings, ecg_model_dir: Path, tmp_path: Path,
                                                         model: str) -> None:
    done = deepsynthbody(settings, "models", "preview", model, "--out", str(tmp_path / "x.png"))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "cardiovascular/ecg" in line and "Traceback" not in line, line


def test_a_good_preview_draws_a_png(settings: Settings, ecg_model_dir: Path, tmp_path: Path) -> None:
    done = deepsynthbody(settings, "models", "preview", "cardiovascular/ecg", "--param", "leads=12", "--count", "2",
                         "--out", str(tmp_path / "ecg.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ecg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serve_help_explains_every_option_with_its_default(settings: Settings) -> None:
    done = deepsynthbody(settings, "serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for option, default in [("--host", "127.0.0.1"), ("--port", "8000"), ("--workers", "1")]:
        assert option in text and f"(default: {default}" in text, (option, text)
    assert "--data-dir" in text and "./data" in text
    assert "(default: 1, or one per GPU of --gpus)" in text


@pytest.mark.parametrize("args", [["serve", "--port", "http"], ["serve", "--workers", "-1"],
                                  ["--log-level", "loud", "serve"], ["worker", "--gpus", "0,,1"],
                                  ["serve", "--gpus", "cuda:0"], ["worker", "--gpus", "1,1"]])
def test_bad_flags_are_usage_errors_not_tracebacks(settings: Settings, args: list[str]) -> None:
    done = deepsynthbody(settings, *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "error: argument" in done.stderr.splitlines()[-1], done.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_fewer_workers_than_gpus_is_refused_naming_the_idle_gpus(settings: Settings, command: str) -> None:
    done = deepsynthbody(settings, command, "--workers", "2", "--gpus", "0,1,2,3")
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"deepsynthbody {command}: error: --workers 2 leaves GPU 2,3 without a worker: give --workers 4 or more "
        "(several per GPU), or fewer GPUs in --gpus"], done.stderr


def test_several_workers_from_one_command_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --workers N` and `worker --workers N` give each worker its share of the cores (its lanes, measuring
    and encoding processes), unless DSB_ORT_THREADS is set."""
    from deepsynthbody.core import settings as settings_module
    from deepsynthbody.core.settings import Settings, share_cores

    monkeypatch.setattr(settings_module, "usable_cores", lambda: 16)  # a 16-core host
    monkeypatch.setenv("DSB_ORT_THREADS", "0")  # what it was comes back after the test
    monkeypatch.delenv("DSB_ORT_THREADS")
    share_cores(1)
    assert "DSB_ORT_THREADS" not in os.environ  # one worker: every core (0)
    share_cores(4)
    assert os.environ["DSB_ORT_THREADS"] == "4" and Settings().ort_threads == 4
    monkeypatch.setenv("DSB_ORT_THREADS", "3")
    share_cores(2)
    assert os.environ["DSB_ORT_THREADS"] == "3"
    monkeypatch.delenv("DSB_ORT_THREADS")
    share_cores(32)
    assert os.environ["DSB_ORT_THREADS"] == "1"


def test_a_setting_that_is_not_valid_is_named_as_its_variable(settings: Settings) -> None:
    env = environment(settings, DSB_ENCODING_PROCESSES="two", DSB_BATCH_SIZE="0")
    done = subprocess.run([sys.executable, "-m", "deepsynthbody", "worker", "--burst"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("deepsynthbody worker: error: DSB_BATCH_SIZE='0': Input should be greater than 0; "
                               "DSB_ENCODING_PROCESSES='two': Input should be a valid integer"), lines[0]
    assert "Configuration" in lines[0] and "DEBUG" not in lines[0]


def test_the_cores_a_worker_uses_are_those_it_may_run_on(tmp_path: Path) -> None:
    """A container's cpuset or `taskset` limits the lanes and processes, not the machine's core count."""
    code = "from deepsynthbody.core.settings import usable_cores; print(usable_cores())"
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


def test_gpus_the_host_does_not_have_are_refused_at_start(settings: Settings, tmp_path: Path) -> None:
    """`--gpus` is checked against the GPUs nvidia-smi lists (here a stand-in listing two: `tests.conftest.nvidia_smi`);
    the command runs as it would on such a host, up to CUDA."""
    path = nvidia_smi(tmp_path / "two")
    for command in ("worker", "serve"):
        done = deepsynthbody(settings, command, "--gpus", "0,1,4", PATH=path)
        assert done.returncode == 1 and done.stderr.strip().splitlines() == [
            f"deepsynthbody {command}: error: --gpus: this host has no GPU 4 (nvidia-smi lists: "
            "0 (GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a), 1 (GPU-8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b))"], done.stderr
    queue = f"gpus-{uuid.uuid4().hex[:8]}"
    second = "GPU-8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"  # by its UUID
    done = deepsynthbody(settings, "worker", "--gpus", second, "--burst", "--queues", queue, PATH=path)
    assert done.returncode == 0, done.stderr
    assert "CUDA_VISIBLE_DEVICES=GPU-8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b" in done.stderr
    assert "not checked" not in done.stderr
    done = deepsynthbody(settings, "worker", "--gpus", "1", "--burst", "--queues", queue,
                         PATH=nvidia_smi(tmp_path / "failing", None))  # no driver: said, and not refused
    assert done.returncode == 0, done.stderr
    assert "nvidia-smi is not there or failed: the GPUs of --gpus 1 are not checked" in done.stderr


CPU_CGROUP = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu hierarchy, where this machine kind (and its CI) mounts it
IN_QUOTA = """echo $$ > "$1/cgroup.procs"
exec unshare --cgroup --mount \
  sh -c 'umount "$0" && mount -t cgroup -o cpu cgroup "$0" && exec "$1" -c "$2"' "$2" "$3" "$4"
"""


def test_a_containers_cpu_quota_limits_the_cores_a_worker_uses(tmp_path: Path) -> None:
    """`docker run --cpus 1`, compose's `cpus:`, a Kubernetes CPU limit: the process may run on every core, but its
    cgroup's quota allows one CPU's time. Made here as a container makes it: a cgroup with that quota, entered in
    a cgroup namespace of its own (so it is the root the process sees), its hierarchy mounted again there."""
    if not (os.geteuid() == 0 and os.access(CPU_CGROUP / "cpu.cfs_quota_us", os.W_OK) and shutil.which("unshare")):
        pytest.skip("needs root, unshare and cgroup v1's cpu hierarchy at /sys/fs/cgroup/cpu, as this machine kind has")
    group = CPU_CGROUP / f"dsb-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_quota_us").write_text((group / "cpu.cfs_period_us").read_text())  # one CPU's time
        script = tmp_path / "in-quota.sh"
        script.write_text(IN_QUOTA)
        code = "import os; from deepsynthbody.core.settings import usable_cores; print(usable_cores(), os.cpu_count())"
        done = subprocess.run(["sh", str(script), str(group), str(CPU_CGROUP), sys.executable, code], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        cores, machine = map(int, done.stdout.split())
        assert cores == 1 and machine == os.cpu_count(), done.stdout
    finally:
        group.rmdir()


def test_api_and_worker_name_the_models_not_built_in_their_data_dir(settings: Settings, ecg_model_dir: Path,
                                                            tmp_path: Path) -> None:
    """`api` and `worker` build nothing: on a data dir where the ECG's recipe has not run they say so, and how."""
    queue = f"unbuilt-{uuid.uuid4().hex[:8]}"  # empty: the burst worker exits at once
    bare = deepsynthbody(settings, "worker", "--burst", "--queues", queue, DSB_DATA_DIR=str(tmp_path))
    assert bare.returncode == 0, bare.stderr
    (line,) = [line for line in bare.stderr.splitlines() if "not built" in line]
    assert (f"deepsynthbody worker: not built in {tmp_path / 'models'}: pulse2pulse-ecg v1, pulse2pulse-ecg v2. "
            "Requests for them are refused (404) until `deepsynthbody models build` has run once") in line, line
    built = deepsynthbody(settings, "worker", "--burst", "--queues", queue)  # the session's data dir: built
    assert built.returncode == 0 and "not built" not in built.stderr, built.stderr
    with subprocess.Popen([sys.executable, "-m", "deepsynthbody", "api", "--port", str(free_port())], cwd=ROOT,
                          env=environment(settings, DSB_DATA_DIR=str(tmp_path)), stderr=subprocess.PIPE,
                          text=True) as api:
        try:
            first = api.stderr.readline()  # before uvicorn starts
        finally:
            api.terminate()
    assert first.split(" WARNING ", 1)[1].startswith("deepsynthbody api: not built in "), first
