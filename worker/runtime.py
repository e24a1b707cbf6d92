"""What keeps jobs alive across worker deaths: leases, cancel flags, recovery, worker classes.

A running job holds a *lease*: a Redis key with a short TTL that the worker process (and
the job itself, from a thread in the work horse) renews every third of
``settings.job_lease_seconds``. When a worker is killed (SIGKILL, OOM, lost machine), the
lease lapses. Every HistoSynth worker runs :func:`recover_abandoned` when it starts and
then every half lease: a job still marked *started* whose lease is gone is handed to RQ's
own abandoned-job handling (``StartedJobRegistry.cleanup``), which re-enqueues it while
it has retries left (``Retry(max=job_retries)``) and fails it otherwise. The retried job
resumes: training from its last checkpoint, augmentation by skipping finished pairs.

Cancellation of a running job is a flag in Redis that the job polls (training
checkpoints and stops; augmentation stops between pairs).
"""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker, SpawnWorker
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.utils import parse_composite_key

from worker.settings import get_settings

log = logging.getLogger("histosynth.worker")

QUEUES = ("train", "augment")
_LEASE = "histosynth:lease:"
_CANCEL = "histosynth:cancel:"
_RECOVERY_LOCK = "histosynth:recovery-lock"


def lease_key(job_id: str) -> str:
    return _LEASE + job_id


def request_cancel(conn: Redis, job_id: str, ttl_s: int) -> None:
    """Ask a running job to stop (the flag outlives the job by ``ttl_s``)."""
    conn.set(_CANCEL + job_id, b"1", ex=ttl_s)


def cancel_requested(conn: Redis, job_id: str) -> bool:
    """Whether :func:`request_cancel` was called for ``job_id``."""
    return bool(conn.exists(_CANCEL + job_id))


class Lease:
    """Hold ``histosynth:lease:<job_id>`` from a daemon thread while the block runs.

    Args:
        conn: Redis connection (its pool is thread-safe).
        job_id: the job whose lease this is.
        ttl_s: lease lifetime; renewed every ``ttl_s / 3``.
    """

    def __init__(self, conn: Redis, job_id: str, ttl_s: float) -> None:
        self.conn, self.key, self.ttl_ms = conn, lease_key(job_id), max(int(ttl_s * 1000), 1000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{job_id}", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.conn.set(self.key, b"1", px=self.ttl_ms)
            except Exception as exc:  # Redis blips must not kill the job
                log.warning("could not renew lease %s: %s", self.key, exc)

    def __enter__(self) -> Lease:
        self.conn.set(self.key, b"1", px=self.ttl_ms)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def recover_abandoned(conn: Redis, queue_names: tuple[str, ...] | list[str] = QUEUES) -> list[str]:
    """Retry (or fail) started jobs whose lease has lapsed; returns their ids.

    Only one process recovers at a time (a short Redis lock), so a job is never retried twice.
    """
    if not conn.set(_RECOVERY_LOCK, b"1", nx=True, px=10_000):
        return []
    recovered: list[str] = []
    try:
        for name in queue_names:
            recovered += _recover_queue(conn, Queue(name, connection=conn))
    finally:
        conn.delete(_RECOVERY_LOCK)
    return recovered


def _recover_queue(conn: Redis, queue: Queue) -> list[str]:
    registry = StartedJobRegistry(queue=queue)
    raw: list[bytes | str] = conn.zrange(registry.key, 0, -1)  # type: ignore[assignment]
    entries = [e.decode() if isinstance(e, bytes) else e for e in raw]
    stale = {e: parse_composite_key(e)[0] for e in entries}
    stale = {e: jid for e, jid in stale.items() if not conn.exists(lease_key(jid))}
    if not stale:
        return []
    # Expire the entries now; RQ's cleanup then retries or fails them as abandoned jobs.
    conn.zadd(registry.key, dict.fromkeys(stale, 0), xx=True)
    registry.cleanup()
    ids = sorted(set(stale.values()))
    for job in Job.fetch_many(ids, connection=conn):
        if job is not None:
            log.warning("job %s lost its worker; now %s (%s retries left)",
                        job.id, job.get_status().value, job.retries_left)
    return ids


class _LeaseMixin:
    """Lease every job the worker runs and recover abandoned jobs in the background."""

    connection: Redis
    _recovery_stop: threading.Event | None = None

    def execute_job(self, job: Job, queue: Queue) -> Any:
        with Lease(self.connection, job.id, get_settings().job_lease_seconds):
            return super().execute_job(job, queue)  # type: ignore[misc]

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        self._start_recovery()

    def _start_recovery(self) -> None:
        names = list(self.queue_names())  # type: ignore[attr-defined]
        period = get_settings().job_lease_seconds / 2
        stop = self._recovery_stop = threading.Event()
        conn = Redis(connection_pool=self.connection.connection_pool)

        def loop() -> None:
            while True:
                try:
                    recover_abandoned(conn, names)
                except Exception as exc:
                    log.warning("abandoned-job recovery failed: %s", exc)
                if stop.wait(period):
                    return

        threading.Thread(target=loop, name="histosynth-recovery", daemon=True).start()

    def teardown(self) -> None:
        if self._recovery_stop is not None:
            self._recovery_stop.set()
        super().teardown()  # type: ignore[misc]


class _PasswordFromEnvironment(str):
    """A Redis password whose ``repr`` is code that reads it from the environment.

    RQ's SpawnWorker writes the connection's keyword arguments with ``repr`` into the work
    horse's ``python -c`` command line, which every local user can read (``ps``). With this
    the command line holds ``os.environ[...]`` instead, and the horse, spawned with our
    environment, reads the password from there.
    """

    def __repr__(self) -> str:
        return f"__import__('os').environ[{PASSWORD_ENV!r}]"


PASSWORD_ENV = "HISTOSYNTH_WORK_HORSE_REDIS_PASSWORD"


class JobWorker(_LeaseMixin, SpawnWorker):
    """Runs each job in a freshly spawned process (no fork: safe with torch threads, CUDA)."""

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        kwargs = self.connection.connection_pool.connection_kwargs
        password = kwargs.get("password")
        if password and not isinstance(password, _PasswordFromEnvironment):
            os.environ[PASSWORD_ENV] = password  # RQ spawns the horse with os.environ
            kwargs["password"] = _PasswordFromEnvironment(password)  # same value
        super().fork_work_horse(job, queue)


class InlineJobWorker(_LeaseMixin, SimpleWorker):
    """Runs jobs inside the worker process itself (fallback where spawning is not possible)."""

