"""Bring onnxruntime-gpu and the service's dependencies to the lent GPU machine, which reaches no package index.

Here, in the project's venv (it reads the versions installed here, the ones the tests run with):

    .venv/bin/python scripts/gpu-carry.py prepare [--onnxruntime-gpu 1.31.1] [--part-mib 44]

makes .gpucarry/c1 ... cN: one xz-compressed tar of a site-packages folder for CPython 3.12 on x86-64 Linux
(the GPU machine's python3; --python for another), cut into parts that each travel in one call beside the
working tree (64 MiB a call in all). It holds onnxruntime-gpu and every distribution `deepsynthbody` needs at
run time that the machine's image lacks (DEVICE_IMAGE below), each at the version installed here. It prints the
calls to make, on one warm machine, back to back: each part's call copies it to /tmp/carry; the last call
carries the built ECG version and runs scripts/gpu-bench-device.sh, which unpacks /tmp/carry into /tmp/site
and, first of all, runs

    python3 scripts/gpu-carry.py check

there: every requirement of `deepsynthbody`, followed through the installed distributions' own requirements, must
be met by what python3 imports, or it names what is missing or too old and exits 1 before any GPU time is spent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpucarry"
SUMS = "parts.sha256"
CALL_LIMIT = 64 * 2**20  # what one call carries, the working tree included
# CPython 3.12 wheels for x86-64 Linux: the GPU machine's glibc is 2.39, so any manylinux tag up to it installs there.
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in (5, 12, 17, 24, 27, 28, 31, 34, 35, 39)]
# The distributions of the GPU machine's image ('cuda'), as the device tool's KINDS.md lists them (read 2026-11-17).
DEVICE_IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader
lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl
meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
""".split()
# Carried all the same, at the version here: pydantic asks for the newest typing-extensions (4.16 today), newer than
# images tend to hold, and a newer one serves everything an older one did; neurokit2 asks for setuptools < 82. Any
# other requirement the image's versions fail, `check` names there.
CARRIED_ANYWAY = {"typing-extensions", "setuptools"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


IMAGE = frozenset(canonical(name) for name in DEVICE_IMAGE) - CARRIED_ANYWAY  # what is not carried


def major_minor(python: str) -> str:
    return ".".join(python.split(".")[:2])


def project_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(line) for line in pyproject["project"]["dependencies"]]


def applies(requirement: Requirement, environment: dict[str, str], extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate(environment | {"extra": extra}) for extra in extras or {""})


def walk(environment: dict[str, str], stop: frozenset[str]) -> tuple[dict[str, str | None], list[str]]:
    """Each distribution the project needs (its installed version, None where missing), and each unmet requirement.

    A requirement is followed into the requirements of the distribution installed for it, except into those in
    `stop` (the GPU machine's own, whose needs are its image's business).
    """
    found: dict[str, str | None] = {}
    unmet: list[str] = []
    todo = [(requirement, "deepsynthbody") for requirement in project_requirements()]
    while todo:
        requirement, wanted_by = todo.pop()
        key = canonical(requirement.name)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            version = None
        if version is None or (requirement.specifier and not requirement.specifier.contains(version, prereleases=True)):
            unmet.append(f"{requirement} (for {wanted_by}): {'missing' if version is None else version}")
        if key in found:
            continue
        found[key] = version
        if version is None or key in stop:
            continue
        extras = frozenset(requirement.extras)
        for line in metadata.requires(requirement.name) or []:
            needed = Requirement(line)
            if applies(needed, environment, extras):
                todo.append((needed, requirement.name))
    return found, unmet


def check() -> int:
    """On the GPU machine: does python3 import what the project needs, at versions it accepts?"""
    import onnxruntime

    _, unmet = walk(default_environment(), IMAGE)
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        unmet.append(f"onnxruntime-gpu: onnxruntime {onnxruntime.__version__} from {onnxruntime.__file__} "
                     f"lists no CUDA provider")
    for line in unmet:
        print(f"gpu-carry check: {line}", file=sys.stderr)
    print(f"gpu-carry check: {'FAILED' if unmet else 'ok'}: onnxruntime {onnxruntime.__version__} "
          f"({onnxruntime.__file__}), {sys.version.split()[0]}", flush=True)
    return 1 if unmet else 0


def tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return sum((ROOT / name).stat().st_size for name in files.decode().split("\0") if (ROOT / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def carried(python: str, onnxruntime_gpu: str) -> list[str]:
    """`name==version` of each distribution the GPU machine lacks, as installed here, and onnxruntime-gpu."""
    environment = default_environment() | {"python_version": major_minor(python), "python_full_version": python}
    found, unmet = walk(environment, IMAGE)
    if unmet:
        raise SystemExit("install the project here first (the README's test command); unmet here:\n  "
                         + "\n  ".join(unmet))
    return sorted(f"{name}=={found[name]}" for name in found if name not in IMAGE) + [
        f"onnxruntime-gpu=={onnxruntime_gpu}"]


def prepare(onnxruntime_gpu: str, part_mib: int, version: int, python: str) -> int:
    tree, step = tracked_bytes(), part_mib * 2**20
    model = ROOT / "data" / "models" / "cardiovascular" / "ecg" / "pulse2pulse-ecg" / str(version)
    problems = []  # known before anything is packed
    if tree + step > CALL_LIMIT:
        problems.append(f"a part ({part_mib} MiB) and the working tree ({tree / 2**20:.1f} MiB) exceed the "
                        f"{CALL_LIMIT // 2**20} MiB a call carries: run again with a smaller --part-mib")
    if not model.is_dir():
        problems.append(f"{model.relative_to(ROOT)} is not built: run `.venv/bin/deepsynthbody models build`")
    elif tree + (size := folder_bytes(model)) > CALL_LIMIT:
        problems.append(f"the model ({size / 2**20:.1f} MiB) and the working tree ({tree / 2**20:.1f} MiB) exceed the "
                        f"{CALL_LIMIT // 2**20} MiB a call carries")
    for problem in problems:
        print(f"gpu-carry prepare: {problem}", file=sys.stderr)
    if problems:
        return 1
    wanted = carried(python, onnxruntime_gpu)
    print(f"{len(wanted)} distributions the GPU machine lacks:", " ".join(wanted), flush=True)
    shutil.rmtree(CARRY, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        version_tag = major_minor(python)
        platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                        "--only-binary=:all:", "--python-version", version_tag, "--implementation", "cp",
                        "--abi", "cp" + version_tag.replace(".", ""), "--abi", "abi3", "--abi", "none", *platforms,
                        "--target", str(site), *wanted], check=True)
        packed = Path(scratch) / "site.tar.xz"
        with packed.open("wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-T0", "-6"], stdin=tar.stdout, stdout=out, check=True)
            if tar.wait():
                raise SystemExit("tar failed")
        print(f"site-packages for the GPU machine: {folder_bytes(site) / 2**20:.0f} MiB, "
              f"{packed.stat().st_size / 2**20:.0f} MiB packed", flush=True)
        data = packed.read_bytes()
    parts = [data[start:start + step] for start in range(0, len(data), step)]
    sums = []
    for number, part in enumerate(parts, 1):
        (CARRY / f"c{number}").mkdir(parents=True)
        (CARRY / f"c{number}" / f"part.{number:02d}").write_bytes(part)
        sums.append(f"{hashlib.sha256(part).hexdigest()}  part.{number:02d}\n")
    (CARRY / SUMS).write_text("".join(sums))  # the last call carries it: are all the parts in /tmp/carry, whole?
    print(f"\n{len(parts)} parts under {CARRY.relative_to(ROOT)}/; the working tree travels with each call "
          f"({tree / 2**20:.1f} MiB). On one warm machine, back to back:")
    for number in range(1, len(parts) + 1):
        print(f"  carry [\".gpucarry/c{number}\"]: mkdir -p /tmp/carry && cp .gpucarry/c{number}/* /tmp/carry/")
    print(f"  carry [\"{model.relative_to(ROOT)}\", \".gpucarry/{SUMS}\"]: "
          f"scripts/gpu-bench-device.sh --version {version}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ready = commands.add_parser("prepare", help="here: pack what the GPU machine lacks into .gpucarry/")
    ready.add_argument("--onnxruntime-gpu", default="1.31.1", help="its version (1.31.1 has run on the lent H100)")
    ready.add_argument("--part-mib", type=int, default=44, help="the size of each part, in MiB")
    ready.add_argument("--version", type=int, default=2, help="the ECG version the last call carries")
    ready.add_argument("--python", default="3.12.3", help="the GPU machine's python3 version (X.Y.Z)")
    commands.add_parser("check", help="there: is every requirement met by what python3 imports?")
    arguments = parser.parse_args()
    if arguments.command == "check":
        return check()
    os.chdir(ROOT)
    return prepare(arguments.onnxruntime_gpu, arguments.part_mib, arguments.version, arguments.python)


if __name__ == "__main__":
    sys.exit(main())
