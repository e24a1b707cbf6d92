"""Enqueue, inspect and cancel jobs on the RQ queues ``train`` and ``augment``.

Jobs are enqueued by dotted path (``worker.jobs.train_job``) with a JSON payload, so the
API process never imports torch. Every job gets ``Retry(max=settings.job_retries)``: a
job that raises, or whose worker dies (see :mod:`worker.runtime`), runs again and resumes.
"""

from __future__ import annotations

import secrets
from typing import Any, cast, get_args
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result

from model.errors import UnknownNameError
from worker.runtime import QUEUES, cancel_requested, request_cancel
from worker.schemas import AugmentJobRequest, JobInfo, JobStatus, TrainJobRequest
from worker.settings import Settings, get_settings

_CANCELABLE = ("queued", "scheduled", "deferred")


def connect(settings: Settings | None = None) -> Redis:
    """A Redis connection for RQ (bytes responses); ValueError when none is configured."""
    settings = settings or get_settings()
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set: start `histosynth serve` or point REDIS_URL at Redis")
    # few, quick retries: a Redis outage should turn into an error fast, not a hung request
    retry = RedisRetry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    return Redis.from_url(settings.redis_url, socket_connect_timeout=5, health_check_interval=30,
                          retry=retry)


def redact_url(url: str | None) -> str:
    """``url`` with its password replaced by ``***`` (for logs and messages)."""
    if not url:
        return "(not set)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def enqueue_train(conn: Redis, req: TrainJobRequest, settings: Settings | None = None) -> JobInfo:
    """Queue a training job (queue ``train``)."""
    settings = settings or get_settings()
    job = _enqueue(
        conn, "train", "worker.jobs.train_job", req.model_dump(mode="json"),
        timeout=settings.train_job_timeout, settings=settings,
        description=f"train {req.name} ({req.preset}, {req.mode}) on {req.dataset}",
    )
    return job_info(job)


def enqueue_augment(conn: Redis, req: AugmentJobRequest, settings: Settings | None = None) -> JobInfo:
    """Queue an augmentation job (queue ``augment``); a missing seed is drawn now."""
    settings = settings or get_settings()
    if req.seed is None:  # fixed at enqueue time so that retries reuse it
        req = req.model_copy(update={"seed": secrets.randbelow(2**31)})
    job = _enqueue(
        conn, "augment", "worker.jobs.augment_job", req.model_dump(mode="json"),
        timeout=settings.augment_job_timeout, settings=settings,
        description=f"augment {req.source} -> {req.output} with {req.model or settings.default_model}",
    )
    return job_info(job)


def _enqueue(
    conn: Redis, kind: str, func: str, payload: dict[str, Any], *, timeout: int,
    settings: Settings, description: str,
) -> Job:
    queue = Queue(kind, connection=conn)
    retry = Retry(max=settings.job_retries) if settings.job_retries > 0 else None
    return queue.enqueue(
        func, payload, job_timeout=timeout, retry=retry, result_ttl=settings.result_ttl,
        failure_ttl=settings.failure_ttl, meta={"kind": kind, "progress": {}},
        description=description,
    )


def fetch(conn: Redis, job_id: str) -> Job:
    """The RQ job; UnknownNameError when it does not exist (or has expired) or the id is
    malformed."""
    try:
        return Job.fetch(job_id, connection=conn)
    except (NoSuchJobError, ValueError):  # RQ: ValueError for ids with '.', ' ', '*'...
        raise UnknownNameError(f"unknown job {job_id!r}") from None


def get_job(conn: Redis, job_id: str) -> JobInfo:
    """Status, progress, result and error of one job (KeyError when unknown)."""
    return job_info(fetch(conn, job_id))


def list_jobs(conn: Redis, limit: int = 200) -> list[JobInfo]:
    """Jobs of both queues in every state, newest first."""
    ids: list[str] = []
    for name in QUEUES:
        queue = Queue(name, connection=conn)
        ids += queue.get_job_ids()
        for registry_class in (
            StartedJobRegistry, FinishedJobRegistry, FailedJobRegistry,
            CanceledJobRegistry, ScheduledJobRegistry, DeferredJobRegistry,
        ):
            ids += registry_class(queue=queue).get_job_ids()
    jobs = [j for j in Job.fetch_many(list(dict.fromkeys(ids)), connection=conn) if j is not None]
    jobs.sort(key=lambda j: j.created_at.timestamp() if j.created_at else 0.0, reverse=True)
    return [job_info(j) for j in jobs[:limit]]


def cancel_job(conn: Redis, job_id: str, settings: Settings | None = None) -> JobInfo:
    """Cancel a job: a queued one never runs; a running one checkpoints (train) and stops."""
    settings = settings or get_settings()
    job = fetch(conn, job_id)
    status = job.get_status().value
    if status in ("finished", "failed", "canceled", "stopped"):
        return job_info(job)
    request_cancel(conn, job_id, settings.result_ttl)  # seen by the job if it is (or gets) started
    if status in _CANCELABLE:
        try:
            job.cancel()
        except InvalidJobOperation:
            pass  # canceled meanwhile
    return job_info(fetch(conn, job_id))


def job_info(job: Job) -> JobInfo:
    """The API's view of an RQ job."""
    status = job.get_status(refresh=True).value
    meta = job.get_meta(refresh=True)
    result: dict[str, Any] | None = None
    error: str | None = None
    latest = job.latest_result()
    if latest is not None and latest.type == Result.Type.SUCCESSFUL:
        value = latest.return_value
        result = value if isinstance(value, dict) else {"value": value}
        if result.get("canceled"):
            status = "canceled"
    elif latest is not None and latest.type in (Result.Type.FAILED, Result.Type.STOPPED):
        error = summarize_error(latest.exc_string or "")
    if status not in get_args(JobStatus):
        status = "queued" if status in ("created", "ready_to_enqueue", "rate_limited") else "failed"
    return JobInfo(
        id=job.id, kind=str(meta.get("kind") or job.origin), status=cast(JobStatus, status),
        description=job.description or "", progress=dict(meta.get("progress") or {}),
        result=result, error=error if status in ("failed", "stopped") else None,
        cancel_requested=cancel_requested(job.connection, job.id),
        retries_left=job.retries_left, created_at=job.created_at, started_at=job.started_at,
        ended_at=job.ended_at,
    )


def summarize_error(exc_string: str) -> str:
    """One line from a traceback: the final ``Type: message`` line."""
    if "AbandonedJobError" in exc_string:
        return "the worker running this job died and no retries were left (AbandonedJobError)"
    lines = [line.strip() for line in exc_string.strip().splitlines() if line.strip()]
    if not lines:
        return "job failed without an error message"
    line = lines[-1]
    return line if len(line) <= 500 else line[:497] + "..."
