"""`GET /metrics` in Prometheus' text format, and the middleware that counts and times every request.

Two kinds of numbers, so that any API process, on any host, gives a correct answer:

- HTTP requests (`dsb_http_requests_total` by method, route template and status; `dsb_http_request_duration_seconds`,
  the time to the response's headers, by method and route) are this host's: with several API processes
  (`deepsynthbody api --processes N`) they share prometheus-client's multiprocess directory
  (`PROMETHEUS_MULTIPROC_DIR`, which `deepsynthbody api` makes for each run and removes after it), so any of them
  answers for all of them. Prometheus scrapes each host; sum over instances.
- The queue, jobs by state, live workers, samples generated and job times come from Redis when `/metrics` is
  scraped (RQ's queue, registries and worker registrations; the hash the workers add to on each finished job,
  `deepsynthbody.core.job_events`): every process of every host says the same, so take one instance's (or `max`).

The middleware is plain ASGI: one counter increment and one histogram observation per request, on children of
the metrics cached by label values. A route is named by its template (`/jobs/{job_id}`), never by the raw path,
and a method outside HTTP's own by `other`, so no request can add a label value.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY
from starlette.routing import Router, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepsynthbody.core import job_events
from workers.heartbeat import LIVE_SECONDS  # RQ only: as app.routes.health

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the route label of a request no route answers
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

disable_created_metrics()  # no `_created` series: the multiprocess mode has none either, so every mode reads alike
_registry = CollectorRegistry(auto_describe=True)  # this process's metrics (its own values: one process)
REQUESTS = Counter("dsb_http_requests", "HTTP requests answered, by method, route template and status",
                   ["method", "route", "status"], registry=_registry)
LATENCY = Histogram("dsb_http_request_duration_seconds",
                    "Seconds from a request's arrival to its response's headers, by method and route template",
                    ["method", "route"], registry=_registry,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


class MetricsMiddleware:
    """Counts and times every HTTP request; added last, so it sees the answers of every other middleware too."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app, self.router = app, router
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._paths: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        answered = False

        async def timed_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._record(scope, message["status"], time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not answered:  # an exception before any response: the server answers 500
                self._record(scope, 500, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = route.path if route is not None else self._template(scope)
        method = scope["method"]
        key = (method, template, status)
        children = self._children.get(key)
        if children is None:
            label = method if method in _METHODS else "other"
            children = (REQUESTS.labels(label, template, str(status)), LATENCY.labels(label, template))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def _template(self, scope: Scope) -> str:
        """The template of a request no route recorded itself for: refused before routing (a missing key, a body too
        large), routed on a copy of its scope (a trailing slash), or answered by a route that records nothing."""
        if self._paths is None:
            self._paths = [(compile_path(path)[0], path) for path in _route_paths(self.router.routes)]
        path: str = scope["path"]
        if len(path) > 1 and path[-1] == "/":
            path = path[:-1]
        for regex, template in self._paths:
            if regex.match(path):
                return template
        return UNMATCHED


def _route_paths(routes: list[Any]) -> list[str]:
    """Every route's path template, those of included routers too (which recent FastAPI keeps in routers of their
    own until a request comes)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept apart: the routes are the app's own
        return [path for route in routes if (path := getattr(route, "path", None))]
    return [path for context in iter_route_contexts(routes) if (path := context.path)]


class RedisCollector(Collector):
    """What Redis says at scrape time: the same from every API process."""

    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis, self.queue = redis, queue

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("dsb_redis_up", "1 when Redis answered this scrape, else 0 (the gauges below are absent)")
        try:
            families = list(self._families())
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Any]:
        name, redis = self.queue, self.redis
        queue = Queue(name, connection=redis)
        registries = {
            "deferred": DeferredJobRegistry(name, connection=redis),
            "scheduled": ScheduledJobRegistry(name, connection=redis),
            "started": StartedJobRegistry(name, connection=redis),
            "finished": FinishedJobRegistry(name, connection=redis),
            "failed": FailedJobRegistry(name, connection=redis),
            "canceled": CanceledJobRegistry(name, connection=redis),
        }
        with redis.pipeline(transaction=False) as pipe:
            pipe.llen(queue.key)
            for registry in registries.values():
                pipe.zcard(registry.key)
            pipe.smembers(WORKERS_BY_QUEUE_KEY % name)
            pipe.hgetall(job_events.metrics_key(name))
            pipe.time()
            depth, *counts, worker_keys, recorded, (seconds, microseconds) = pipe.execute()
        with redis.pipeline(transaction=False) as pipe:
            for key in sorted(worker_keys):
                pipe.hmget(key, "state", "last_heartbeat")
            worker_states = pipe.execute()
        now = datetime.fromtimestamp(seconds + microseconds / 1e6, UTC)

        gauge = GaugeMetricFamily("dsb_queue_depth", "Jobs waiting in the queue for a worker", labels=["queue"])
        gauge.add_metric([name], depth)
        yield gauge
        jobs = GaugeMetricFamily("dsb_jobs", "RQ jobs by state (a request larger than DSB_CHUNK_SIZE is one job per "
                                 "chunk plus its archive job; a canceled running job counts as failed)",
                                 labels=["queue", "state"])
        jobs.add_metric([name, "queued"], depth)
        for state, count in zip(registries, counts):
            jobs.add_metric([name, state], count)
        yield jobs
        workers = GaugeMetricFamily("dsb_workers", "Worker processes registered on the queue: busy or idle while alive "
                                    f"(a heartbeat under {LIVE_SECONDS:g} s old, as /readyz counts them), silent when "
                                    "killed or stopped without deregistering", labels=["queue", "state"])
        by_state: dict[str, int] = {"busy": 0, "idle": 0, "silent": 0}
        for state, beat in worker_states:
            if state is None:  # its registration outlived its record, until RQ's clean-up
                continue
            text = state.decode() if isinstance(state, bytes) else str(state)
            age = (now - utcparse(beat.decode() if isinstance(beat, bytes) else beat)).total_seconds() if beat else None
            text = text if age is not None and age < LIVE_SECONDS else "silent"
            by_state[text] = by_state.get(text, 0) + 1
        for state, count in sorted(by_state.items()):
            workers.add_metric([name, state], count)
        yield workers
        yield from _recorded(job_events.parse(recorded))


def _recorded(recorded: job_events.Recorded) -> Iterator[Any]:
    samples = CounterMetricFamily("dsb_samples_generated", "Samples generated by finished jobs, by model, format and "
                                  "the onnxruntime execution provider that made them (CUDAExecutionProvider on a GPU; "
                                  "a GPU worker that found no GPU it can use counts under CPUExecutionProvider)",
                                  labels=["model", "version", "format", "execution_provider"])
    for labels, count in sorted(recorded.samples.items()):
        samples.add_metric(list(labels), count)
    yield samples
    run = HistogramMetricFamily("dsb_job_run_seconds", "Seconds a worker ran a finished RQ job, by task "
                                "(generate: a whole request; chunk; archive), model and format",
                                labels=["task", "model", "version", "format"])
    for labels, histogram in sorted(recorded.run.items()):
        run.add_metric(list(labels), histogram.cumulative(), histogram.total)
    yield run
    latency = HistogramMetricFamily("dsb_job_latency_seconds", "Seconds from a request's 202 to its archive written, "
                                    "by model and format", labels=["model", "version", "format"])
    for labels, histogram in sorted(recorded.latency.items()):
        latency.add_metric(list(labels), histogram.cumulative(), histogram.total)
    yield latency


def exposition(redis: Redis, queue: str) -> bytes:
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)  # every API process's request metrics, this one's too
    else:
        registry.register(_registry)  # type: ignore[arg-type] - a registry is a collector
    registry.register(RedisCollector(redis, queue))
    return generate_latest(registry)


@contextlib.contextmanager
def shared_by_processes(processes: int) -> Iterator[str | None]:
    """For `deepsynthbody api --processes N`: a fresh multiprocess directory the N processes share (set before any
    of them starts, so prometheus-client keeps their values in files there), removed once they have stopped. One
    process needs none; a directory the environment names already is used as it is."""
    if processes < 2 or os.environ.get(MULTIPROC_ENV):
        yield os.environ.get(MULTIPROC_ENV)
        return
    directory = tempfile.mkdtemp(prefix="deepsynthbody-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics: requests, queue, jobs, workers, samples, job times",
            response_class=Response,
            responses={200: {"description": "Prometheus' text exposition format (version 0.0.4)",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(exposition(state.redis, state.settings.queue), media_type=CONTENT_TYPE_PLAIN_0_0_4)
