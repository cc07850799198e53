"""The compose file is valid for the docker CLI that is installed (no engine is needed for `config`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT


def _compose() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose() is None, reason="no docker compose CLI on this machine")
def test_compose_config_is_valid() -> None:
    result = subprocess.run([*_compose(), "config"], cwd=ROOT, capture_output=True, text=True)  # type: ignore[misc]
    assert result.returncode == 0, result.stderr
    for service in ("redis:", "api:", "worker:"):
        assert service in result.stdout
    assert "appendonly" in result.stdout and "capabilities" in result.stdout and "healthcheck" in result.stdout


def test_images_are_defined() -> None:
    api = (ROOT / "docker" / "api.Dockerfile").read_text()
    worker = (ROOT / "docker" / "worker-gpu.Dockerfile").read_text()
    assert "deepsynthbody api" in api
    assert "nvidia/cuda" in worker and "onnxruntime-gpu" in worker and '"worker"' in worker
    # healthy only with a GPU it can use: onnxruntime-gpu lists its CUDA provider without one
    assert "HEALTHCHECK --interval=15s --timeout=5s --retries=3 CMD python -m workers.gpu_health" in worker


def test_the_compose_worker_is_healthy_only_with_a_gpu_it_can_use() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    worker = compose[compose.index("\n  worker:"):compose.index("\nvolumes:")]
    assert 'test: ["CMD", "python", "-m", "workers.gpu_health"]' in worker


def test_compose_requires_api_keys_and_says_how_to_get_the_first() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    api = compose[compose.index("\n  api:"):compose.index("\n  worker:")]
    assert "DSB_AUTH: required" in api
    assert "docker compose exec api deepsynthbody keys create --name admin --admin" in api


def test_compose_builds_the_models_once_before_the_api_and_the_workers() -> None:
    """`api` and `worker` build nothing: a one-off service builds the recipe models into the shared volume first."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["models"]["command"] == ["deepsynthbody", "models", "build"]
    assert services["models"]["volumes"] == services["api"]["volumes"] == services["worker"]["volumes"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["models"] == {"condition": "service_completed_successfully"}, name
