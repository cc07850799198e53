"""The README stays true: its two set-up commands, its configuration table, and every example, run as written; the
same for the examples of the pages it links in docs/."""

from __future__ import annotations

import ast
import csv
import importlib.metadata
import io
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, environment, wait_finished

README = (ROOT / "README.md").read_text()
# the README, then the pages in docs/ it moved its details to: their examples are held to the same standard
PAGES = "\n".join([README, *(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))])
README_URL = "localhost:8000"
CPU_TORCH = "--extra-index-url https://download.pytorch.org/whl/cpu"


def _setup_commands() -> list[str]:
    setup = README.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", setup)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in re.findall(r"```(\w*)\n(.*?)\n```", PAGES, re.S) if lang == language]


def _shell_commands(block: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [c for c in commands if c and not c.startswith("#")]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    serve, test = _setup_commands()
    assert serve.endswith("deepsynthbody serve") and test.endswith("pytest")
    assert test in (ROOT / ".ci" / "run").read_text()


def test_setup_commands_take_torch_cpu_build() -> None:
    """torch only exports the ECG generator once: the CPU build, not the multi-GB CUDA build PyPI serves on Linux."""
    for command in _setup_commands():
        assert CPU_TORCH in command, command
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "torch==2.13.0" in extras["export"]  # pinned: an index must not pick another build


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`DSB_{name.upper()}" in README, name


def test_python_examples_need_only_what_the_serve_command_installs() -> None:
    """The serve command installs the base dependencies (+ export): every module the examples import is there."""
    base = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower()
            for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    for block in _blocks("python"):
        for node in ast.walk(ast.parse(block)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names):
                assert {d.lower() for d in providers.get(top, [])} & base, f"{top} is not a base dependency"


@pytest.fixture
def readme_env(settings: Settings, api_url: str) -> dict[str, str]:
    return environment(settings)


def _run_shell(command: str, api_url: str, cwd: Path, job_id: str | None = None) -> subprocess.CompletedProcess[str]:
    command = command.replace(README_URL, api_url.removeprefix("http://"))
    if job_id:
        command = command.replace("<id>", job_id)
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_curl_examples_run_as_written(client: httpx.Client, api_url: str, tmp_path: Path) -> None:
    """Every curl line of the README (the job id filled in), in order, against a real API and worker."""
    commands = [c for block in _blocks("") for c in _shell_commands(block) if c.startswith("curl ")]
    posts = [c for c in commands if "-X POST" in c]
    assert len(posts) >= 2 and any("<id>" in c for c in commands)
    job_id = None
    for command in commands:
        done = _run_shell(command, api_url, tmp_path, job_id)
        assert done.returncode == 0, (command, done.stderr)
        if command.endswith("/result/link"):  # keys are off here: the link is the archive's own path
            assert json.loads(done.stdout) == {"url": f"/jobs/{job_id}/result", "expires_at": None}, done.stdout
        elif "-X POST" in command:
            created = json.loads(done.stdout)
            assert created["status"] == "queued", done.stdout
            job_id = created["job_id"]
            assert wait_finished(client, job_id)["status"] == "finished"
        elif "-X DELETE" in command:  # the job has finished: DELETE removes its files, its status stays
            assert json.loads(done.stdout)["status"] == "finished"
            assert client.get(f"/jobs/{job_id}/result").status_code == 404
        elif command.endswith("/jobs/<id>"):
            assert json.loads(done.stdout)["status"] == "finished"
        elif command.startswith("curl -I "):
            head = done.stdout.lower()
            assert head.startswith("http/1.1 200") and "content-length:" in head and ".zip" in head, done.stdout
        elif "-OJ" in command:
            (archive,) = tmp_path.glob("*.zip")
            with zipfile.ZipFile(archive) as zipped:
                assert zipped.testzip() is None and "manifest.json" in zipped.namelist()
        elif command.endswith("/stream"):
            request = json.loads(client.get(f"/jobs/{job_id}").text)["request"]
            assert len(done.stdout.splitlines()) == request["num_samples"]


def test_the_recipe_it_shows_is_one_request_the_default_service_takes(ecg_model_dir: Path) -> None:
    """The dataset-as-a-recipe paragraph's request passes the default service's validation, limits included."""
    from app import request_models
    from model_store.store import load_manifest

    recipes = [json.loads(text) for text in re.findall(r"`(\{[^`]*\"num_samples\"[^`]*\})`", PAGES)]
    assert recipes
    max_samples = Settings.model_fields["max_samples"].default
    manifest = load_manifest(ecg_model_dir)
    for recipe in recipes:
        assert (recipe["model"], recipe["version"]) == (manifest.id, manifest.version)
        request_models.parse(manifest, max_samples, json.dumps(recipe).encode())


def test_python_example_runs_as_written(client: httpx.Client, api_url: str, readme_env: dict[str, str]) -> None:
    (example,) = [b for b in _blocks("python") if "/generate/" in b]
    example = example.replace(f"http://{README_URL}", api_url)
    check = "\nassert ecgs.shape == (100, 5000, 12) and ecgs.dtype == np.int16, ecgs.shape\n"
    done = subprocess.run([sys.executable, "-c", example + check], cwd=ROOT, env=readme_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_cli_examples_exist(readme_env: dict[str, str]) -> None:
    """Each `deepsynthbody ...` command the README names is a real command of the CLI (checked with --help)."""
    named = set(re.findall(r"deepsynthbody ((?:models )?[a-z-]+)", PAGES))
    assert {"serve", "models preview", "models validate", "bench", "bench-gpu"} <= named
    for command in sorted(named):
        done = subprocess.run([sys.executable, "-m", "deepsynthbody", *command.split(), "--help"], cwd=ROOT,
                              env=readme_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)


def test_client_examples_run_as_written(client: httpx.Client, settings: Settings, api_url: str,
                                       readme_env: dict[str, str], tmp_path: Path) -> None:
    """Every `deepsynthbody generate` and `deepsynthbody jobs` line of the README's shell blocks, run as written
    against a real API and worker (`--url` added); the filtered one's labels.csv holds what it asked for."""
    commands = [c for block in _blocks("") for c in _shell_commands(block)
                if c.startswith(("deepsynthbody generate ", "deepsynthbody jobs "))]
    assert any("--where" in c for c in commands) and any(c.startswith("deepsynthbody jobs ") for c in commands)
    for command in commands:
        done = subprocess.run([sys.executable, "-m", *command.split(), "--url", api_url], cwd=tmp_path,
                              env=readme_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr)
        if " generate " not in command:
            continue
        out = tmp_path / command.split(" -o ")[1].split()[0]
        manifest = json.loads((out / "manifest.json").read_text())
        count = int(command.split(" -n ")[1].split()[0])
        assert len(list(out.glob("*.hea"))) == count == manifest["num_samples"], command
        conditions = dict(c.split("=") for c in re.findall(r"--where (\S+)", command))
        if conditions:
            with (out / "labels.csv").open() as labels:
                rows = list(csv.DictReader(labels))
            assert len(rows) == count and len(list(out.glob("*.atr"))) == count
            for name, bounds in conditions.items():
                low, high = (float(b) if b else None for b in bounds.split(":"))
                (column,) = [c for c in rows[0] if c.startswith(f"{name}_")]
                values = [float(row[column]) for row in rows]
                assert all((low is None or v >= low) and (high is None or v <= high) for v in values), values


def test_preview_example_draws_the_readme_grid(readme_env: dict[str, str], tmp_path: Path) -> None:
    (command,) = re.findall(r"`(deepsynthbody models preview digestive/gi-tract [^`]+)`", README)
    (tmp_path / "docs").mkdir()
    done = subprocess.run([sys.executable, "-m", *command.split()], cwd=tmp_path, env=readme_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    assert Image.open(io.BytesIO((tmp_path / "docs" / "gi-tract-grid.png").read_bytes())).size[0] > 500


def test_contribution_examples_run_as_written(client: httpx.Client, api_url: str, tmp_path: Path) -> None:
    """The "Contributing a model over HTTP" block, in order, against a real API with keys off (the local user is an
    admin): the upload is pending, then approved and served; each decision is made on a pending upload (the
    block's own upload line is run again when the one before was decided already)."""
    from tests.helpers.tiny_model import make_model

    section = re.split(r"\n##+ ", PAGES.split("## Contributing a model over HTTP", 1)[1], maxsplit=1)[0]
    (block,) = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    model = make_model(tmp_path / "model", id="readme-contribution", subcategory="readme-patch")
    commands = [c.replace("path/to/model", str(model)) for c in _shell_commands(block)]
    upload = next(c for c in commands if c.startswith("curl -X POST") and "/models" in c)
    contribution, decided, seen = None, False, set()
    for command in commands:
        if ("/approve" in command or "/reject" in command) and decided:
            contribution = json.loads(_run_shell(upload, api_url, tmp_path).stdout)["id"]
        done = _run_shell(command.replace("<contribution>", str(contribution)), api_url, tmp_path)
        assert done.returncode == 0, (command, done.stderr)
        if not command.startswith("curl "):
            continue
        answer = json.loads(done.stdout)
        if command == upload:
            assert answer["state"] == "pending", answer
            contribution = answer["id"]
        elif command.endswith("/contributions/<contribution>"):
            assert answer["state"] == "pending", answer
        elif command.endswith("/contributions"):
            assert contribution in [c["id"] for c in answer["contributions"]]
        elif "/approve" in command:
            assert answer["state"] == "approved", answer
            assert client.post("/generate/integumentary/readme-patch", json={"num_samples": 1}).status_code == 202
        elif "/reject" in command:
            assert answer["state"] == "rejected" and answer["reason"], answer
        decided = decided or answer.get("state") in ("approved", "rejected")
        seen.add(command.split("localhost:8000", 1)[-1].split()[0])
    assert {"/models", "/contributions/<contribution>", "/admin/contributions",
            "/admin/contributions/<contribution>/approve", "/admin/contributions/<contribution>/reject"} <= seen
