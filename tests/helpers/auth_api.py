"""An API process with authentication on (or as configured), and keys made in its Redis: for the auth and limits
tests. The `client` fixture of tests/conftest.py runs with authentication off (loopback)."""

from __future__ import annotations

import subprocess
import sys
from typing import IO

import httpx
from redis import Redis

from deepsynthbody.core import keys
from deepsynthbody.core.embedded_redis import free_port
from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, answers, environment, wait_for


def start_api(settings: Settings, host: str = "127.0.0.1", stderr: IO[bytes] | None = None,
              stdout: IO[bytes] | None = None, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """`deepsynthbody api` on a free port; `extra` are environment variables (DSB_AUTH="required", ...); its access
    log goes to `stdout`, everything else it logs to `stderr`."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "deepsynthbody", "api", "--host", host, "--port", str(port)],
                               cwd=ROOT, env=environment(settings, **extra), stderr=stderr, stdout=stdout)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{url}/healthz"), 30, "the API to answer")
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def new_key(settings: Settings, name: str, **limits: object) -> str:
    with Redis.from_url(str(settings.redis_url)) as redis:
        key, _ = keys.create(redis, name, **limits)  # type: ignore[arg-type]
    return key


def client(url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


