"""Sharded augmentation: one augmentation job fans out into shard jobs on the ``augment`` queue.

The job (the *parent*) lists the masks, splits the planned pairs into shards of
``pairs_per_shard`` consecutive pairs and enqueues one shard job per shard but the first,
with fixed ids (a retried parent finds them and enqueues nothing twice). It then works
itself: it takes shard 0, then any shard nobody holds, from the last one down (workers take
the queue from the front), so a cluster of one worker finishes too. Who runs a shard is
decided by a claim in Redis (:class:`worker.shards.ShardBoard`); a claim held by a killed
worker lapses after the lease and the shard is taken again (by its retried job or by the
parent), skipping the pairs already complete. The parent reports combined progress and ETA,
and when every shard is done writes the one manifest. DELETE of the parent cancels all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis import Redis

from worker.augment import TRANSFORMS, Pair, Prepared, plan_pairs, prepare
from worker.layouts import Counter, Report, ShouldStop
from worker.queue import enqueue_shards
from worker.schemas import AugmentJobRequest, AugmentShard
from worker.settings import Settings
from worker.shards import ShardBoard, cancel_shards

POLL_S = 0.5


def shard_unit(req: AugmentJobRequest) -> int:
    """Pairs per shard: ``pairs_per_shard``, for webdataset a whole number of tars."""
    if req.output_format != "webdataset":
        return req.pairs_per_shard
    return -(-req.pairs_per_shard // req.samples_per_tar) * req.samples_per_tar


def plan_shards(masks: list[str], req: AugmentJobRequest, seed: int, parent: str) -> list[AugmentShard]:
    """Consecutive pair ranges, each with the masks its pairs use."""
    per_mask = len(TRANSFORMS[req.transforms]) * req.variants_per_mask
    total, unit = len(masks) * per_mask, shard_unit(req)
    specs = []
    for shard, start in enumerate(range(0, total, unit)):
        stop = min(start + unit, total)
        first, last = start // per_mask, (stop - 1) // per_mask
        specs.append(AugmentShard(parent=parent, shard=shard, start=start, stop=stop, first_mask=first,
                                  masks=masks[first:last + 1], seed=seed, request=req))
    return specs


def shard_pairs(spec: AugmentShard) -> list[Pair]:
    req = spec.request
    pairs = plan_pairs(spec.masks, TRANSFORMS[req.transforms], req.variants_per_mask, spec.seed, spec.first_mask)
    return [p for p in pairs if spec.start <= p.index < spec.stop]


def execute(board: ShardBoard, spec: AugmentShard, job: Prepared, report: Report,
            should_stop: ShouldStop) -> dict[str, Any] | None:
    """Run one shard unless someone else holds or finished it (then None)."""
    with board.claim(spec.shard) as held:
        if not held or board.is_finished(spec.shard):
            return None
        pairs = shard_pairs(spec)

        def shard_report(progress: dict[str, Any]) -> None:
            board.set_progress(spec.shard, progress)
            report(progress)

        counter = Counter(len(pairs), shard_report, should_stop)
        complete = job.layout.write(pairs, job.augmenter.sample, counter)
        result = {"pairs": len(pairs), "written": counter.written, "skipped": counter.skipped}
        if not complete:
            return {**result, "canceled": True}
        board.finish(spec.shard, result)
        return result


class Watch:
    """The parent's combined view: pairs done over all shards, ETA from its own observations."""

    def __init__(self, board: ShardBoard, specs: list[AugmentShard]) -> None:
        self.board, self.specs = board, specs
        self.total = sum(s.stop - s.start for s in specs)
        self.start = time.monotonic()
        self.done_at_start: int | None = None

    def progress(self) -> dict[str, Any]:
        finished, current = self.board.finished(), self.board.progress()
        counts = {"done": 0, "written": 0, "skipped": 0}
        for spec in self.specs:
            entry = finished.get(spec.shard) or current.get(spec.shard) or {}
            counts["written"] += int(entry.get("written", 0))
            counts["skipped"] += int(entry.get("skipped", 0))
        counts["done"] = min(counts["written"] + counts["skipped"], self.total)
        open_shards = [s.shard for s in self.specs if s.shard not in finished]
        running = sum(self.board.claimed(open_shards)) if open_shards else 0
        return {**counts, "total": self.total, "eta_s": self.eta(counts["done"]),
                "shards": {"total": len(self.specs), "finished": len(finished), "running": running}}

    def eta(self, done: int) -> float | None:
        if self.done_at_start is None:
            self.done_at_start = done
        rate = (done - self.done_at_start) / max(time.monotonic() - self.start, 1e-6)
        return round((self.total - done) / rate, 1) if rate > 0 else None


def coordinate(
    req: AugmentJobRequest, settings: Settings, conn: Redis, job_id: str, *, seed: int,
    report: Report, should_stop: ShouldStop,
) -> dict[str, Any]:
    """The parent job: fan out, work on shards itself, wait for the rest, write the manifest."""
    job = prepare(req, settings)
    specs = plan_shards(job.masks, req, seed, job_id)
    board = ShardBoard(conn, job_id, settings.job_lease_seconds, settings.result_ttl)
    if not should_stop():
        board.add_jobs(enqueue_shards(conn, [s.model_dump(mode="json") for s in specs[1:]], settings))
    watch = Watch(board, specs)
    order = specs[:1] + specs[:0:-1]  # shard 0 first, then from the back
    while len(finished := board.finished()) < len(specs):
        if should_stop():
            cancel_shards(conn, job_id, settings.result_ttl)
            return {"canceled": True, "pairs": watch.total, **_sums(finished)}
        free = _unclaimed(board, [s for s in order if s.shard not in finished])
        if free is None:
            report(watch.progress())
            time.sleep(POLL_S)
            continue
        execute(board, free, job, lambda _p: report(watch.progress()), should_stop)
    job.layout.write_manifest(watch.total)
    sums = _sums(board.finished())
    return {**job.result(watch.total, sums["written"], sums["skipped"]), "shards": len(specs)}


def _unclaimed(board: ShardBoard, candidates: list[AugmentShard]) -> AugmentShard | None:
    held = board.claimed([s.shard for s in candidates]) if candidates else []
    return next((s for s, h in zip(candidates, held, strict=True) if not h), None)


def _sums(finished: dict[int, dict[str, Any]]) -> dict[str, int]:
    return {k: sum(int(r.get(k, 0)) for r in finished.values()) for k in ("written", "skipped")}


def run_shard(spec: AugmentShard, settings: Settings, conn: Redis, *, report: Report,
              should_stop: Callable[[], bool]) -> dict[str, Any]:
    """A shard job: nothing when its shard is finished or held, else its pairs."""
    board = ShardBoard(conn, spec.parent, settings.job_lease_seconds, settings.result_ttl)
    base = {"shard": spec.shard, "parent": spec.parent}
    if board.is_finished(spec.shard) or any(board.claimed([spec.shard])):
        return {**base, "ran": False}  # before loading the model: the common case at the end
    job = prepare(spec.request, settings, list_source=False)
    result = execute(board, spec, job, report, lambda: should_stop() or board.canceled())
    return {**base, "ran": result is not None, **(result or {})}
