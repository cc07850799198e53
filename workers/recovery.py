"""Work left "started" by workers that are gone runs again, at once.

A worker that is stopped puts its job back on the queue itself (`workers.worker`); one that is killed, or
whose machine stops, cannot. Its job stays in RQ's StartedJobRegistry until the entry's heartbeat expires and
a worker's next registry clean-up, minutes later. Here that clean-up runs at once for the entries of workers
that are no longer registered: RQ's own `StartedJobRegistry.cleanup` retries each such job while it has
retries left (the API enqueues jobs with `Retry`), and fails it with a message after that. Chunks are
deterministic and rewrite their files from the start, so running one again gives the same bytes.

A worker that stopped heartbeating counts as gone (`alive_workers`), and idle workers look for such orphans every
MAINTENANCE_SECONDS (`workers.worker`): a worker killed on another machine, or a whole machine that stopped, has
its job run again within about 45 s.

When the death is seen as it happens (`serve` supervising its worker processes, a worker pool reaping a child:
`worker_gone`), the dead worker's registration goes at once and its job runs again within a second or two.

Imports RQ only: `serve` calls it before any worker starts.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from rq import Worker
from rq.executions import Execution
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now

from deepsynthbody.core import job_events

log = logging.getLogger(__name__)

STALE_SECONDS = 30  # a worker whose last heartbeat is older is dead; it beats every 2 s
LOCK = "deepsynthbody:recovery"  # one recovery at a time: two at once could queue the same job twice


def worker_gone(connection: Redis, queue_names: list[str], name: str | None = None, pid: int | None = None,
                hostname: str | None = None) -> list[str]:
    """A worker process was seen dying (by its name, or by its pid on this host): deregister it now, instead of
    when its registration expires, and run again what it was running. The ids of the jobs queued again."""
    for worker in Worker.all(connection=connection, serializer=JSONSerializer):
        if worker.name == name or (pid is not None and worker.pid == pid and worker.hostname == hostname):
            worker.register_death()
    return requeue_orphans(connection, queue_names)


def forget_workers(connection: Redis) -> int:
    """Deregister every worker: for `serve`, whose private Redis no live worker can be using yet."""
    workers = Worker.all(connection=connection, serializer=JSONSerializer)
    for worker in workers:
        worker.register_death()
    return len(workers)


def requeue_orphans(connection: Redis, queue_names: list[str]) -> list[str]:
    """Run again (or fail) the jobs that workers no longer registered left started; their ids."""
    with connection.lock(LOCK, timeout=10, blocking_timeout=20):  # held for milliseconds; a dead holder's expires
        return _requeue_orphans(connection, queue_names)


def alive_workers(connection: Redis) -> set[str]:
    """Names of the registered workers that heartbeat: every worker does every 2 s from a thread of its own
    (`workers.heartbeat`), busy or idle, so one silent for STALE_SECONDS is dead (killed, or its machine stopped),
    however long its registration has left."""
    cutoff = now() - timedelta(seconds=STALE_SECONDS)
    return {worker.name for worker in Worker.all(connection=connection, serializer=JSONSerializer)
            if worker.last_heartbeat is None or worker.last_heartbeat >= cutoff}


def _requeue_orphans(connection: Redis, queue_names: list[str]) -> list[str]:
    alive = alive_workers(connection)
    orphans: list[str] = []
    for name in queue_names:
        registry = StartedJobRegistry(name, connection=connection, serializer=JSONSerializer)
        entries = {}
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            execution = Execution(execution_id, job_id, connection=connection)
            try:
                execution.refresh()
            except ValueError:  # its hash expired with its worker: no worker name left
                pass
            if execution.worker_name not in alive:
                entries[execution.composite_key] = 0  # expired long ago, for RQ's clean-up below
                orphans.append(job_id)
        if entries:
            connection.zadd(registry.key, entries, xx=True)
            registry.cleanup()
    if orphans:
        log.info("%d job(s) left running by a stopped worker run again: %s", len(orphans), ", ".join(orphans))
        job_events.orphans_handled(connection, orphans)
    return orphans
