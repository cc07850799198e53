"""One clock for a job's times: the Redis server's, which the API processes and every worker share.

A job's `created_at` is read by an API process, its `started_at` by a worker, its `finished_at` by the worker
that writes its archive, perhaps on three machines; their own clocks may disagree by more than the moments
between these events. Redis's `TIME` is one clock for all of them, a round trip away.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis


def now(connection: Redis) -> str:
    """The Redis server's time, UTC, ISO 8601 to the microsecond."""
    seconds, microseconds = connection.time()
    moment = datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=int(microseconds))
    return moment.isoformat(timespec="microseconds")
