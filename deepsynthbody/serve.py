"""`deepsynthbody serve`: the API, its workers and, when no Redis URL is configured, a private Redis.

Before anything starts, `serve` takes its port (the socket the API will serve on) and, with a private
Redis, an exclusive lock on its data dir: a second `serve` on a busy port or on a data dir in use says what
to do in one line and starts nothing (a second Redis on the same append-only file would corrupt it).

The private Redis listens on loopback and requires a password (`deepsynthbody.core.embedded_redis`); every process
`serve` starts gets its URL in DSB_REDIS_URL. `serve` starts one `deepsynthbody worker` process per worker and
watches them and Redis (`deepsynthbody.supervisor.Supervisor`): one that dies is started again, and a dead
worker's job runs again at once.

Its children run in sessions of their own (`deepsynthbody.core.processes`), so Ctrl-C reaches `serve` alone,
which stops them in order: the API, then the workers (a running job is interrupted at its next batch and
goes back on the queue), then Redis. A second Ctrl-C kills the workers at once; what they were running
runs again on the next start. Holding the data dir's lock, `serve` knows no worker of its private Redis is
alive when it starts: jobs they left started run again at once (`workers.recovery`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from model_store.store import open_store

log = logging.getLogger("deepsynthbody")

LOCK_FILE = "serve.lock"
STOP_WORKERS_SECONDS = 60
LOCK_WAIT_SECONDS = 10


class _Stop(BaseException):
    """A signal while `serve` was starting."""


class _Signals:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed): while starting, stop starting; while serving, stop
    serving (uvicorn takes SIGINT and SIGTERM itself then, and hands them on once it has stopped); after
    that, count: a second one hurries the stop."""

    def __init__(self) -> None:
        self.count = 0
        self.serving = False
        self.server: Any = None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if not self.serving and self.count == 1:
            raise _Stop
        if self.server is not None and not self.server.should_exit:
            self.server.should_exit = True

    def hurry(self) -> bool:
        return self.count > 1


def display_host(host: str) -> str:
    """The host to put in a URL a user can open: a wildcard address means this machine."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def lock_data_dir(data_dir: Path, url: str) -> int:
    """An exclusive lock on the data dir for as long as this process lives (the kernel drops it when the
    process ends, however it ends); its file says who holds it."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not _try_lock(fd):
        holder: dict[str, Any] = {}
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            pass
        if not _alive(holder.get("pid")) and time.monotonic() < deadline:
            time.sleep(0.1)  # its `serve` is gone and its Redis is exiting: the lock is free in a moment
            continue
        os.close(fd)
        who = f" (pid {holder['pid']}, serving {holder['url']})" if holder.get("pid") else ""
        raise SystemExit(f"deepsynthbody serve: the data dir {data_dir} is in use by another `deepsynthbody serve`"
                         f"{who}. "
                         "Use that one, stop it, or start this one with another --data-dir (and another --port).")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": url}).encode(), 0)
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False
    return True


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything starts: a busy port is found before Redis or a worker is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(f"deepsynthbody serve: port {port} on {host} is in use by another program (another "
                             f"`deepsynthbody serve`?). Stop it, or choose another port: --port {port + 1}") from None
        raise SystemExit(f"deepsynthbody serve: cannot listen on {host}:{port} ({exc.strerror}); "
                         "check --host and --port") from None
    sock.set_inheritable(False)
    return sock


def build_missing(settings: Any) -> None:  # noqa: ANN401 - Settings, imported lazily
    """Export the models whose recipes live here and are not installed yet: one log line per model."""
    from model_store.build import build, missing

    store = open_store(settings)
    todo = missing(store)
    if not todo:
        return
    try:
        import torch  # noqa: F401 - only the export recipes need it
    except ImportError:
        log.error("models are missing and torch is not installed: pip install '.[export]', "
                  "then `deepsynthbody models build`")
        return
    log.info("first start: exporting %d model(s) to ONNX (a few seconds each)", len(todo))
    build(store)


def example_request(settings: Any, base: str) -> str:  # noqa: ANN401
    """One request a newcomer can paste: the ECG when it is installed, else the first model there is."""
    entries = open_store(settings).entries()
    preferred = [e for e in entries if (e.manifest.category, e.manifest.subcategory) == ("cardiovascular", "ecg")]
    entry = (preferred or entries or [None])[0]
    if entry is None:
        return f"curl {base}/models"
    m = entry.manifest
    body = json.dumps({"num_samples": 10, "seed": 42, "format": "wfdb" if "wfdb" in m.formats else m.formats[0]})
    return f"curl -X POST {base}/generate/{m.category}/{m.subcategory} -H 'content-type: application/json' -d '{body}'"


def banner(settings: Any, host: str, port: int) -> str:  # noqa: ANN401
    base = f"http://{display_host(host)}:{port}"
    return "\n".join([
        "",
        f"DeepSynthBody is ready at {base}",
        f"  in a browser:         {base}/  (pick a model, make samples, download them)",
        f"  interactive API docs: {base}/docs",
        f"  models:               curl {base}/models",
        f"  try:                  {example_request(settings, base)}",
        f"                        then curl {base}/jobs/<job_id> until \"finished\", "
        f"and curl -OJ {base}/jobs/<job_id>/result",
        "  stop:                 Ctrl-C",
        "",
    ])


def run(host: str, port: int, num_workers: int, gpus: list[str] | None = None) -> None:
    import uvicorn

    from deepsynthbody.core import logs
    from deepsynthbody.core.embedded_redis import EmbeddedRedis
    from deepsynthbody.core.keys import resolve_auth
    from deepsynthbody.core.settings import Settings, share_cores
    from deepsynthbody.supervisor import Supervisor

    resolve_auth(host)  # DSB_AUTH's default depends on the address: before any settings are read
    settings = Settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DSB_DATA_DIR"] = str(data_dir)
    url = f"http://{display_host(host)}:{port}"
    lock = lock_data_dir(data_dir, url) if not settings.redis_url else None
    sock = listen(host, port)

    signals = _Signals()
    signals.install()
    redis_server = None
    supervisor: Supervisor | None = None
    server = None
    try:
        if lock is not None:
            redis_server = EmbeddedRedis.private(data_dir).start(keep_fds=(lock,))
            os.environ["DSB_REDIS_URL"] = redis_server.url  # with its password: for the processes started here
            log.info("started a private Redis at %s (data in %s)", redis_server.address, redis_server.directory)
            _recover(redis_server.url, settings.queue)
        build_missing(Settings())
        share_cores(num_workers)
        supervisor = Supervisor([sys.executable, "-m", "deepsynthbody", "worker"], num_workers,
                                          redis_server.url if redis_server else str(settings.redis_url),
                                          settings.queue, redis_server, gpus=gpus).start()
        ready = banner(Settings(), host, port)

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if self.started and not self.should_exit:
                    print(ready, flush=True)

        server = Server(uvicorn.Config("app.main:create_app", factory=True, host=host, port=port,
                                       log_config=logs.uvicorn_config(),
                                       timeout_graceful_shutdown=Settings().shutdown_timeout))
        signals.serving, signals.server = True, server
        server.run(sockets=[sock])
    except _Stop:
        pass
    finally:
        signals.serving = True
        sock.close()
        if supervisor is not None:
            if supervisor.workers:
                log.info("stopping the workers (a running job goes back on the queue; Ctrl-C again to kill them)")
            supervisor.stop(timeout=STOP_WORKERS_SECONDS, hurry=signals.hurry)
        if redis_server is not None:
            redis_server.stop()
        if supervisor is not None:
            supervisor.close()
        if lock is not None:
            os.close(lock)
    if server is not None and not server.started and not signals.count:
        raise SystemExit(1)  # uvicorn said why


def _recover(redis_url: str, queue: str) -> None:
    """No worker of this private Redis is alive (this process holds the data dir's lock): forget the
    registrations they left, and run the jobs they were running again."""
    from redis import Redis

    from workers import recovery

    with Redis.from_url(redis_url) as connection:
        recovery.forget_workers(connection)
        recovery.requeue_orphans(connection, [queue])
