"""RQ workers that keep their ONNX sessions: jobs run in the worker process itself, not in a fork.

How a running job ends early, and what becomes of it:

- a user's DELETE (RQ's stop-job command): the job stops at its next batch and is marked stopped; once no
  part of the request is running any more, its files go (the API removes them itself when none was running);
  logged at INFO, as the normal event it is;
- the worker's shutdown (SIGTERM, SIGINT: `serve` stopping, `docker stop`): the job stops at its next batch
  and goes back to the front of its queue, without using up one of its retries; the next worker runs it again
  from its start (its files are rewritten, the same bytes);
- the GPU's failure (a CUDA error: the process's CUDA context fails every call after one): the job fails and
  RQ runs it again (its retries), and the worker ends with status `EXIT_GPU_FAILED` once it has handed the job
  back, so that a new process takes its place: on the GPU if the GPU works again, else on the CPU, saying why
  (`workers.runtime`);
- the worker's death (SIGKILL, a crash): whoever sees it die (`serve`, which supervises its worker processes, or
  the worker pool of `deepsynthbody worker --workers N`) deregisters it and runs its job again at once; otherwise
  the next worker to start, or `serve` when it starts again, finds the job started by a worker that is no longer
  registered and runs it again (`workers.recovery`).

Workers run no RQ scheduler process: the service schedules nothing (its retries are immediate), and a
scheduler forked by a worker outlives a killed worker, holding its lock for minutes.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import signal
import sys
import time
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq import Queue, SimpleWorker, worker_registration
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import clean_registries
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus
from rq.worker_pool import WorkerData, WorkerPool

from deepsynthbody.core import disk, job_events, logs
from deepsynthbody.core import gpus as gpu_lists
from deepsynthbody.core.jobs import ARCHIVE_TASK, CHUNK_TASK, GENERATE_TASK, JobPaths, chunk_job_ids
from deepsynthbody.core.settings import get_settings
from workers import ecg_filter, gpu_health, heartbeat, lifecycle, recovery, retention, runtime, tasks

_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}

# The only functions a worker runs: whoever can write to Redis can enqueue a job naming any importable function
# (`os.system`), and RQ would import and call it. Anything else fails unrun, and unimported.
TASKS = frozenset({GENERATE_TASK, CHUNK_TASK, ARCHIVE_TASK})


WORKER_TTL = 30  # RQ's registration of a worker lives WORKER_TTL + 60 s after its last heartbeat
MAINTENANCE_SECONDS = 15
STUCK_SECONDS = 20  # a job taken off the queue and not started after this is run again (RQ: a minute)


EXIT_GPU_FAILED = 75  # EX_TEMPFAIL: the GPU failed; a new worker process may run


class RefusedJob(Exception):
    """A job that is not one of the service's: failed without running anything it names."""


def refusal(job: Job) -> str | None:
    """Why a worker must not run this job (None: it is one of the service's own)."""
    try:
        name = job.func_name
    except Exception as exc:  # noqa: BLE001 - data this worker's JSON serializer cannot read: not the API's
        return f"refused: its data is not a job of this service ({type(exc).__name__})"
    if name not in TASKS:
        return f"refused: {name!r} is not a task of this service (workers run only {', '.join(sorted(TASKS))})"
    extras = [what for what, present in (("a success callback", job._success_callback_name),
                                         ("a failure callback", job._failure_callback_name),
                                         ("a stopped callback", job._stopped_callback_name),
                                         ("webhooks", job.webhooks)) if present]
    if extras:
        return f"refused: it carries {' and '.join(extras)}, which this service never sets"
    return None

# RQ's bookkeeping at INFO (channels, registries, scheduler locks, a pool's messages to its workers): dropped, so
# a worker's log says that it started, what it runs, how each job ends, and that it stops.
_BOOKKEEPING = {
    "Worker %s: subscribing to channel %s",
    "Worker %s: unsubscribing from channel %s",
    "*** Listening on %s...",
    "Worker %s: cleaning registries for queue: %s",
    "Worker %s: cleaning group registries",
    "Worker %s: job %s result is kept for %s seconds",
    "Worker %s: stopping on request",
    "Acquired scheduler lock for %s",
    "Scheduler for %s started with PID %s",
    "Scheduler stopping, releasing locks for %s...",
    "Scheduler with PID %d has stopped",
    "Starting worker started with PID %s",
    "Sending stop signal to %s workers",
    "Sent shutdown command to worker with %s",
    "Waiting for workers to shutdown...",
}


def _not_bookkeeping(record: logging.LogRecord) -> bool:
    if record.levelno != logging.INFO:
        return True
    if record.msg in _BOOKKEEPING:
        return False
    # "Job OK" repeats "Successfully completed ... job in ...s", logged just before it
    return not (record.msg == "Worker %s: %s: %s (%s)" and "Job OK" in str(record.args[2] if record.args else ""))


class GenerationWorker(SimpleWorker):
    """SimpleWorker, so per-process model sessions outlive each job; stops and heartbeats between batches."""

    _interrupted_job_id: str | None = None
    _gpu_failed = False
    max_connection_wait_time = 2.0  # Redis gone (restarted by `serve`): try again every 2 s, not up to every 60 s
    REFUSED_WRITES_WAIT_SECONDS = 2

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Blocking dequeues of WORKER_TTL - 15 s, so an idle worker runs its maintenance (orphans of dead workers run
        # again: `workers.recovery`) every MAINTENANCE_SECONDS rather than every 10 minutes
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_SECONDS)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def work(self, *args: object, **kwargs: object) -> bool:
        kwargs["with_scheduler"] = False  # see the module's docstring
        worked = super().work(*args, **kwargs)  # type: ignore[arg-type]
        if self._gpu_failed:
            raise SystemExit(EXIT_GPU_FAILED)  # the pool or `serve` starts a new worker; alone, its supervisor does
        return worked

    def register_birth(self) -> None:
        super().register_birth()
        if (gpu := os.environ.get(gpu_lists.VARIABLE)) is not None:
            self.log.info("Worker %s (pid %d): %s=%s", self.name, os.getpid(), gpu_lists.VARIABLE, gpu)
        if runtime.cuda_available(get_settings()) and (why_not := gpu_health.problem()):
            # said as it starts, not only once a job has loaded a model (`workers.runtime` says it again there)
            self.log.error("Worker %s (pid %d): a GPU worker with no GPU it can use %s: its jobs will run on the "
                           "CPU. %s", self.name, os.getpid(), runtime.without_gpu(why_not), runtime.WITHOUT_GPU_REMEDY)
        self._stop_heartbeats = heartbeat.keep_alive(self)  # every 2 s, idle or busy: /readyz sees a death at once

    def register_death(self) -> None:
        if getattr(self, "_stop_heartbeats", None):
            self._stop_heartbeats()
        super().register_death()

    def unsubscribe(self) -> None:
        """RQ's, with the command thread told to stop before the UNSUBSCRIBE reply wakes it. RQ unsubscribes first,
        then calls the thread's `stop()` and joins it for a second; since redis-py 8.2 `stop()` itself waits for the
        thread, and a thread the reply woke before `stop()` cleared its flag goes back to waiting, up to RQ's 60-s
        `sleep_time`, for a subscription that never comes: an idle worker took a minute to stop after SIGTERM in 4
        of 15 stops (measured). Here the flag is cleared first, so the reply ends the thread; a thread that does not
        end within a second is left behind (a daemon thread)."""
        thread = self.pubsub_thread
        if thread is None:
            return
        if "timeout" in inspect.signature(thread.stop).parameters:
            thread.stop(timeout=0)  # the flag only (redis-py >= 8.2 joins otherwise)
        else:
            thread.stop()
        self.pubsub.unsubscribe()
        thread.join(timeout=1)
        self.pubsub.close()

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        reason = refusal(job)
        if reason is not None:
            return self._refuse(job, queue, execution, reason)
        job_events.started(job)
        lifecycle.attach(lambda: self.maintain_heartbeats(job, execution))
        try:
            return super().perform_job(job, queue, execution)
        finally:
            lifecycle.detach()

    def _refuse(self, job: Job, queue: Queue, execution: Execution, reason: str) -> bool:
        """Fail the job as RQ fails any job, minus whatever would run code or reach out: no callback, no webhook,
        no retry."""
        self.log.warning("Worker %s: job %s %s", self.name, job.id, reason)
        job._success_callback_name = job._failure_callback_name = job._stopped_callback_name = None
        job.webhooks, job.retries_left = [], None
        try:
            raise RefusedJob(reason)
        except RefusedJob:
            self._finalize_failure(job, queue, execution, sys.exc_info())
        return False

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None
                                     ) -> tuple[Job, Queue] | None:
        """RQ waits out a Redis it cannot reach; one that refuses writes (its disk is full) stops RQ's worker: this
        one waits for it too, and goes on once Redis takes writes again."""
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except ResponseError as exc:
                if not tasks.refuses_writes(exc):
                    raise
                self.log.warning("Worker %s: Redis refuses writes (%s); trying again in %d s", self.name, exc,
                                 self.REFUSED_WRITES_WAIT_SECONDS)
                time.sleep(self.REFUSED_WRITES_WAIT_SECONDS)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:  # noqa: ANN001 - RQ's signature
        """A heartbeat Redis refuses (its disk is full) is skipped: RQ heartbeats right after taking a job off the
        queue, and raising there would leave the job taken and never run."""
        try:
            super().heartbeat(timeout, pipeline)
        except ResponseError as exc:
            if pipeline is not None or not tasks.refuses_writes(exc):
                raise

    def execute_job(self, job: Job, queue: Queue) -> None:
        """A job taken while Redis refuses writes starts once it takes them again (it stays RQ's taken job). One
        whose bookkeeping Redis refuses midway (the disk filled up while it ran: its start, progress, success or
        failure could not be recorded) goes back to the front of its queue once Redis takes writes again, and the
        worker lives on: a job's output depends only on its request, so running it again changes no byte."""
        self._wait_for_space(job)
        self._wait_for_writes(job)
        try:
            super().execute_job(job, queue)
        except ResponseError as exc:
            if not tasks.refuses_writes(exc):
                raise
            self.log.warning("Worker %s: Redis refused job %s's bookkeeping (%s); it runs again once Redis takes "
                             "writes", self.name, job.id, exc)
            self._wait_for_writes(job)
            execution = getattr(self, "execution", None)
            self._queue_again(job, queue, execution if execution is not None and execution.job_id == job.id else None)
            job_events.requeued(job, "Redis refused writes while it ran (a full disk)")
            self.set_state(WorkerStatus.IDLE)

    def _wait_for_space(self, job: Job) -> None:
        """A job does not start on a disk below DSB_MIN_FREE_BYTES (the API refuses new jobs then, with 503): it
        would fail for want of space another program took. It waits, still the worker's taken job, and starts
        once space is back."""
        settings, warned = get_settings(), False
        while True:
            try:
                free = disk.free_bytes(settings.data_dir)
            except OSError:
                return  # unreadable: the job says what is wrong when it writes
            if free >= settings.min_free_bytes:
                return
            if not warned:
                self.log.warning("Worker %s: the data dir's disk is almost full (%d bytes free, DSB_MIN_FREE_BYTES = "
                                 "%d); job %s starts once space is back", self.name, free, settings.min_free_bytes,
                                 job.id)
                warned = True
            time.sleep(self.REFUSED_WRITES_WAIT_SECONDS)

    def _wait_for_writes(self, job: Job) -> None:
        warned = False
        while True:
            try:
                super().heartbeat()  # a write
                return
            except ResponseError as exc:
                if not tasks.refuses_writes(exc):
                    raise
                if not warned:
                    self.log.warning("Worker %s: Redis refuses writes (%s); job %s goes on once it takes them again",
                                     self.name, exc, job.id)
                    warned = True
                time.sleep(self.REFUSED_WRITES_WAIT_SECONDS)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # SimpleWorker's TTL is the whole job timeout; the job heartbeats, so use the forking worker's short one.
        return BaseWorker.get_heartbeat_ttl(self, job, working_time)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: RQ's warm shutdown waits for the job to end, which may be hours away; the job is
        interrupted at its next batch instead and queued again."""
        if self.get_state() == WorkerStatus.BUSY:
            lifecycle.interrupt_requested.set()
        super().request_stop(signum, frame)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        # There is no horse to kill: the job checks this flag between batches and stops itself.
        lifecycle.stop_requested.set()

    def handle_exception(self, job: Job, *exc_info: object) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(error, lifecycle.JobStopped) or self._stopped_job_id == job.id:
            self.log.info("Worker %s: job %s canceled (%s)", self.name, job.id, error)
            return
        if isinstance(error, (tasks.DiskFull, ecg_filter.BudgetExceeded)):
            job.retries_left = None  # running it again at once would fill the disk again, or draw the same candidates
        if runtime.gpu_failure(error):
            self._gpu_failed = self._stop_requested = True  # RQ's loop ends after this job's failure is handled
            self.log.error("Worker %s (pid %d): the GPU failed (%s): job %s %s, and this worker ends with status %d "
                           "for a new one to take its place", self.name, os.getpid(), runtime.described(error), job.id,
                           "runs again" if job.retries_left else "fails (it has no retries left)", EXIT_GPU_FAILED)
        if isinstance(error, lifecycle.JobInterrupted):
            self._interrupted_job_id = job.id
            self.log.info("Worker %s: job %s interrupted by shutdown; queued to run again", self.name, job.id)
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry=None,  # noqa: ANN001
                           exc_string: str = "", execution: Execution | None = None) -> None:
        interrupted, self._interrupted_job_id = self._interrupted_job_id == job.id, None
        canceled = self._stopped_job_id == job.id
        if interrupted and not canceled:
            self._queue_again(job, queue, execution)
            job_events.requeued(job, "the worker is shutting down")
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        job_events.failure_handled(job, exc_string)
        if canceled:
            remove_canceled_files(self.connection, job)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution: Execution) -> None:  # noqa: ANN001
        super().handle_job_success(job, queue, started_job_registry, execution)
        job_events.finished(job, queue.name)

    def _queue_again(self, job: Job, queue: Queue, execution: Execution | None) -> None:
        """Back to the front of its queue, as it was enqueued: not a retry, nothing failed."""
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)  # what RQ's own Job.retry does, minus the count
            pipe.execute()

    def clean_registries(self) -> None:
        """RQ's registry maintenance, which starts by running again what dead workers left started."""
        for queue in self.queues:
            if queue.acquire_maintenance_lock():  # one worker at a time, as RQ does
                try:
                    clean_registries(queue, self._exc_handlers)
                    worker_registration.clean_worker_registry(queue)
                    self._unstick(queue)
                finally:
                    queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def _unstick(self, queue: Queue) -> None:
        """RQ's clean-up of jobs taken off the queue but never started (their worker died, or Redis refused its next
        write, in between), after STUCK_SECONDS instead of RQ's minute; a retry, as RQ does it."""
        taken = queue.intermediate_queue
        for job_id in taken.get_job_ids():
            if job_id in queue.started_job_registry:
                continue
            job = queue.fetch_job(job_id)
            if job is None:
                taken.remove(job_id)
            elif not taken.set_first_seen(job_id):
                first_seen = taken.get_first_seen(job_id)
                if first_seen is not None and (now() - first_seen).total_seconds() > STUCK_SECONDS:
                    self.handle_job_failure(job, queue, exc_string="taken off the queue but never started")
                    taken.remove(job_id)

    def run_maintenance_tasks(self) -> None:
        try:
            # First of all, and at every start whoever else did RQ's maintenance lately: what dead workers left started
            recovery.requeue_orphans(self.connection, self.queue_names())
            super().run_maintenance_tasks()
        except ResponseError as exc:  # a Redis that refuses writes (a full disk) stops nothing: next round
            if not tasks.refuses_writes(exc):
                raise
            self.log.warning("Worker %s: maintenance skipped, Redis refuses writes (%s)", self.name, exc)
            self.last_cleaned_at = now()
        settings = get_settings()
        # RQ forgets a finished job after result_ttl; its files go too (an hour later, so no download is cut short)
        retention.remove_expired(settings.jobs_dir, settings.result_ttl + 3600)


class GenerationWorkerPool(WorkerPool):
    """`deepsynthbody worker --workers N`: RQ's pool, which starts a new worker when one dies; the dead one's job
    runs again at once, instead of once its registration has expired. With `--gpus`, each worker is forked with
    one GPU in CUDA_VISIBLE_DEVICES (`deepsynthbody.core.gpus`); a new worker takes the one its predecessor left."""

    def __init__(self, *args: object, gpus: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gpus = gpus or []
        self.gpu_of: dict[str, str] = {}  # a live worker's name: its GPU (a dead one's goes in handle_dead_worker)

    def start_worker(self, *args: object, **kwargs: object) -> None:
        if not self.gpus:
            super().start_worker(*args, **kwargs)  # type: ignore[arg-type]
            return
        gpu = gpu_lists.least_used(self.gpus, self.gpu_of.values())
        before = set(self.worker_dict)
        with gpu_lists.visible(gpu):  # the forked worker starts with it; CUDA reads it at its first use
            super().start_worker(*args, **kwargs)  # type: ignore[arg-type]
        for name in set(self.worker_dict) - before:
            self.gpu_of[name] = gpu

    def handle_dead_worker(self, worker_data: WorkerData) -> None:
        super().handle_dead_worker(worker_data)
        self.gpu_of.pop(worker_data.name, None)
        code = worker_data.process.exitcode
        if code:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            self.log.warning("worker %s (pid %d) %s; a new one starts", worker_data.name, worker_data.pid, how)
        try:
            recovery.worker_gone(self.connection, self._queue_names, name=worker_data.name)
        except RedisError as exc:  # the next worker to start does it (`GenerationWorker.run_maintenance_tasks`)
            self.log.warning("could not run worker %s's job again yet: %s", worker_data.name, exc)


def remove_canceled_files(connection: Redis, job: Job) -> bool:
    """Remove the files of a canceled request once none of its parts is running (the last one to stop does)."""
    spec = job.args[0]
    ids = [spec["job_id"], *chunk_job_ids(spec)]
    jobs = [j for j in Job.fetch_many(ids, connection=connection, serializer=JSONSerializer) if j is not None]
    statuses = [j.get_status(refresh=False) for j in jobs]
    request_canceled = (bool(jobs) and jobs[0].id == spec["job_id"]
                        and statuses[0] in (JobStatus.STOPPED, JobStatus.CANCELED))
    if not request_canceled or any(status not in _ENDED for status in statuses):
        return False
    shutil.rmtree(JobPaths(get_settings().jobs_dir, spec["job_id"]).root, ignore_errors=True)
    return True


def connect() -> Redis:
    settings = get_settings()
    if not settings.redis_url:
        raise SystemExit("set DSB_REDIS_URL (or REDIS_URL) to the Redis the API uses")
    return Redis.from_url(settings.redis_url)


def run(queues: list[str], num_workers: int = 1, burst: bool = False, gpus: list[str] | None = None) -> None:
    logs.configure(logging.INFO, force=False)  # as the command configured it, else text or JSON (DSB_LOG_FORMAT)
    for name in ("rq.worker", "rq.scheduler", "rq.worker_pool"):
        logging.getLogger(name).addFilter(_not_bookkeeping)
    connection = connect()
    if num_workers == 1:
        if gpus:
            gpu_lists.use(gpus[0])  # before anything here uses CUDA
        worker = GenerationWorker(queues, connection=connection, serializer=JSONSerializer)
        worker.work(burst=burst)
        return
    pool = GenerationWorkerPool(queues, connection=connection, num_workers=num_workers, worker_class=GenerationWorker,
                                serializer=JSONSerializer, gpus=gpus)
    pool.start(burst=burst)
