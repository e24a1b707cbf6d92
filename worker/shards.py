"""Redis state of a sharded augmentation job: claims, finished shards, progress, shard jobs.

Keys under ``histosynth:augment:<job id>:`` (they expire with the job's results):

- ``claim:<k>``: who works on shard ``k`` now. Taken with SET NX and the lease TTL, renewed
  while the shard runs, released when it ends; a killed executor's claim lapses.
- ``done``: shard -> JSON result, written once (HSETNX) before the claim is released, so a
  later claimant sees the shard finished and does nothing.
- ``progress``: shard -> JSON progress of its latest executor.
- ``jobs``: ids of the shard jobs (what DELETE cancels).

Torch-free: the API process imports this through :mod:`worker.queue`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from redis import Redis
from rq.exceptions import InvalidJobOperation
from rq.job import Job

from worker.runtime import Lease, cancel_requested, request_cancel

_PREFIX = "histosynth:augment:"
_CANCELABLE = ("queued", "scheduled", "deferred")
# delete the claim only while it is still ours (a lapsed claim may belong to someone else now)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def shard_job_id(parent: str, shard: int) -> str:
    """The id of shard job ``shard`` of ``parent`` (fixed, so a retried parent finds it)."""
    return f"{parent}-shard-{shard:05d}"


class ShardBoard:
    """The shared state of the shards of one augmentation job.

    Args:
        conn: Redis connection.
        job_id: the augmentation (parent) job.
        lease_s: claim lifetime; renewed every third of it while a shard runs.
        ttl_s: how long the state outlives the job (the job's result TTL).
    """

    def __init__(self, conn: Redis, job_id: str, lease_s: float, ttl_s: int) -> None:
        self.conn, self.job_id, self.lease_s, self.ttl_s = conn, job_id, lease_s, ttl_s

    def key(self, part: str) -> str:
        return f"{_PREFIX}{self.job_id}:{part}"

    @contextmanager
    def claim(self, shard: int) -> Iterator[bool]:
        """Hold shard ``shard`` while the block runs; yields False when someone else holds it."""
        key, token = self.key(f"claim:{shard}"), secrets.token_hex(8).encode()
        if not self.conn.set(key, token, nx=True, px=max(int(self.lease_s * 1000), 1000)):
            yield False
            return
        try:
            with Lease(self.conn, f"{self.job_id}/{shard}", self.lease_s, key=key, value=token):
                yield True
        finally:
            self.conn.eval(_RELEASE, 1, key, token)

    def claimed(self, shards: list[int]) -> list[bool]:
        """Whether each of ``shards`` is held by a live executor."""
        pipe = self.conn.pipeline(transaction=False)
        for shard in shards:
            pipe.exists(self.key(f"claim:{shard}"))
        return [bool(n) for n in pipe.execute()]

    def finish(self, shard: int, result: dict[str, Any]) -> None:
        self._put("done", shard, result, once=True)

    def finished(self) -> dict[int, dict[str, Any]]:
        return self._all("done")

    def is_finished(self, shard: int) -> bool:
        return bool(self.conn.hexists(self.key("done"), str(shard)))

    def set_progress(self, shard: int, progress: dict[str, Any]) -> None:
        self._put("progress", shard, progress)

    def progress(self) -> dict[int, dict[str, Any]]:
        return self._all("progress")

    def add_jobs(self, ids: list[str]) -> None:
        if ids:
            self.conn.sadd(self.key("jobs"), *ids)
            self.conn.expire(self.key("jobs"), self.ttl_s)

    def jobs(self) -> list[str]:
        members = cast(set[bytes], self.conn.smembers(self.key("jobs")))
        return sorted(m.decode() for m in members)

    def canceled(self) -> bool:
        return cancel_requested(self.conn, self.job_id)

    def _put(self, name: str, shard: int, value: dict[str, Any], once: bool = False) -> None:
        data = json.dumps(value)
        if once:
            self.conn.hsetnx(self.key(name), str(shard), data)
        else:
            self.conn.hset(self.key(name), str(shard), data)
        self.conn.expire(self.key(name), self.ttl_s)

    def _all(self, name: str) -> dict[int, dict[str, Any]]:
        raw = cast(dict[bytes, bytes], self.conn.hgetall(self.key(name)))
        return {int(k): json.loads(v) for k, v in raw.items()}


def cancel_shards(conn: Redis, job_id: str, ttl_s: int) -> list[str]:
    """Cancel the shard jobs of ``job_id``: queued ones never run, running ones stop."""
    ids = ShardBoard(conn, job_id, 1.0, ttl_s).jobs()
    for job in Job.fetch_many(ids, connection=conn):
        if job is None:
            continue
        request_cancel(conn, job.id, ttl_s)
        if job.get_status().value in _CANCELABLE:
            try:
                job.cancel()
            except InvalidJobOperation:
                pass  # it started or ended meanwhile; the flag stops it
    return ids
