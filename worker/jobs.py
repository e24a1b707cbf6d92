"""RQ job functions: importable, context-free, JSON payload in, JSON result out.

The worker's parent process imports this module without torch: everything torch-heavy
(``model.training.train``, ``model.pipeline``, ``model.training.data``) is imported inside the functions,
which run in the work horse.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rq import get_current_job
from rq.job import Job

from model.errors import USER_ERRORS
from worker.augment import run_augment
from worker.fanout import coordinate, run_shard
from worker.models import ModelStore
from worker.runtime import Lease, cancel_requested
from worker.schemas import AugmentJobRequest, AugmentShard, TrainJobRequest
from worker.settings import Settings, get_settings
from worker.storage import LocalStorage, S3Storage, StorageError, copy_tree, open_storage

if TYPE_CHECKING:
    from model.config import ModelConfig, TrainConfig
    from model.training.train import Progress

log = logging.getLogger("histosynth.jobs")

@dataclass
class JobContext:
    """The running RQ job (or none, when called directly): progress, cancel flag, lease.

    Args:
        job: the current RQ job, None outside a worker.
        settings: lease length.
        interval_s: least time between two progress writes / cancel checks.
    """

    job: Job | None
    settings: Settings
    interval_s: float = 0.5
    _last_report: float = field(default=0.0, repr=False)
    _last_check: float = field(default=0.0, repr=False)
    _stop: bool = field(default=False, repr=False)

    @classmethod
    def current(cls, settings: Settings) -> JobContext:
        return cls(get_current_job(), settings)

    @property
    def job_id(self) -> str:
        return self.job.id if self.job else "local"

    def lease(self) -> AbstractContextManager[Any]:
        """Keep the job's lease while the block runs (see worker.runtime)."""
        if self.job is None:
            return nullcontext()
        return Lease(self.job.connection, self.job.id, self.settings.job_lease_seconds)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Hold the lease; a user error (bad dataset, unknown class...) fails without retries.

        Retries are for lost workers and transient failures (StorageError, crashes); running
        a job again on the same bad input would only fail again.
        """
        with self.lease():
            try:
                yield
            except StorageError:
                raise
            except USER_ERRORS:
                if self.job is not None:
                    self.job.retries_left = 0  # the worker reads this object when it fails the job
                raise

    def report(self, progress: dict[str, Any], force: bool = False) -> None:
        """Store progress in ``job.meta['progress']`` (at most every ``interval_s``)."""
        now = time.monotonic()
        if self.job is None or (not force and now - self._last_report < self.interval_s):
            return
        self._last_report = now
        self.job.meta["progress"] = progress
        self.job.save_meta()

    def progress(self) -> dict[str, Any]:
        """The progress reported last (empty outside a worker)."""
        return dict(self.job.meta.get("progress") or {}) if self.job is not None else {}

    def should_stop(self) -> bool:
        """Whether a cancel was requested (polled from Redis at most every ``interval_s``)."""
        now = time.monotonic()
        if self.job is not None and not self._stop and now - self._last_check >= self.interval_s:
            self._last_check = now
            self._stop = cancel_requested(self.job.connection, self.job.id)
        return self._stop


# ---- training ----------------------------------------------------------------------------
def train_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Train on a dataset, resume from the run's checkpoint on retries, publish the model."""
    req = TrainJobRequest.model_validate(payload)
    settings = get_settings()
    ctx = JobContext.current(settings)
    with ctx.running():
        return run_train(req, settings, ctx)


def run_train(req: TrainJobRequest, settings: Settings, ctx: JobContext) -> dict[str, Any]:
    """The body of :func:`train_job`; the run dir is ``data_root/runs/<job id>``."""
    from model.classes import ClassTable
    from model.training.data import load_dataset
    from model.training.train import train

    run_dir = (settings.data_root / "runs" / ctx.job_id).resolve()
    ctx.report({"phase": "dataset"}, force=True)
    root = fetch_dataset(req.dataset, settings, run_dir / "dataset")
    classes = ClassTable.from_dict(req.classes) if req.classes else None
    dataset = load_dataset(root, classes=classes, layout=req.layout)
    model_cfg, train_cfg = configs(req, dataset.classes.num_classes, settings)
    resume = (run_dir / "state.pt").exists()
    result = train(
        model_cfg, train_cfg, dataset, run_dir, name=req.name, resume=resume,
        metadata={"dataset_uri": req.dataset, "preset": req.preset, "job_id": ctx.job_id},
        on_progress=lambda p: ctx.report(progress_dict(p)), should_stop=ctx.should_stop, nproc=req.nproc,
    )
    if result.stopped or result.model_path is None:
        ctx.report({"phase": "canceled"}, force=True)
        return {"canceled": True, "name": req.name, "run_dir": str(run_dir)}
    ctx.report({"phase": "publishing"}, force=True)
    info = ModelStore(settings).publish(result.model_path, req.name)
    ctx.report({"phase": "done"}, force=True)
    return {"name": info.name, "sha256": info.sha256, "uri": info.uri, "size": info.size,
            "run_dir": str(run_dir), "resumed": resume}


def configs(req: TrainJobRequest, num_classes: int, settings: Settings) -> tuple[ModelConfig, TrainConfig]:
    """The preset's configs with the request's overrides."""
    from model.config import preset, replace

    chosen = preset(req.preset)
    model_cfg = replace(chosen.model, num_classes=num_classes,
                        num_scales=req.scales or chosen.model.num_scales)
    changes: dict[str, Any] = {"mode": req.mode, "seed": req.seed, "device": settings.device,
                               "precision": settings.train_precision}
    if req.steps_per_scale:
        changes["steps_per_scale"] = req.steps_per_scale
        changes["holdout_steps"] = min(chosen.train.holdout_steps, req.steps_per_scale // 2)
    return model_cfg, replace(chosen.train, **changes)


def progress_dict(p: Progress) -> dict[str, Any]:
    """JSON-ready training progress for ``job.meta``."""
    return {
        "phase": "training", "scale": p.scale, "scale_rank": p.scale_rank, "num_scales": p.num_scales,
        "step": p.step, "steps_per_scale": p.steps_per_scale, "done_steps": p.done_steps,
        "total_steps": p.total_steps, "losses": {k: round(float(v), 5) for k, v in p.losses.items()},
        "eta_s": None if p.eta_s is None else round(p.eta_s, 1), "elapsed_s": round(p.elapsed_s, 1),
    }


def fetch_dataset(uri: str, settings: Settings, cache: Path) -> Path:
    """A local dataset folder: the folder itself, or an S3 prefix downloaded into ``cache``."""
    storage = open_storage(uri, settings)
    if isinstance(storage, LocalStorage):
        if not storage.root.is_dir():
            raise ValueError(f"dataset folder {storage.root} does not exist")
        return storage.root
    assert isinstance(storage, S3Storage)
    if not copy_tree(storage, cache):
        raise ValueError(f"dataset {uri} is empty")
    return cache


# ---- augmentation ---------------------------------------------------------------------------
def augment_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Fan out into shard jobs, work on shards too, write one manifest (see worker.fanout).

    Without a queue (called directly) every pair is written in this process.
    """
    req = AugmentJobRequest.model_validate(payload)
    settings = get_settings()
    ctx = JobContext.current(settings)
    seed = req.seed if req.seed is not None else job_seed(ctx.job_id)
    with ctx.running():
        if ctx.job is None:
            result = run_augment(req, settings, job_seed=seed, report=ctx.report, should_stop=ctx.should_stop)
        else:
            result = coordinate(req, settings, ctx.job.connection, ctx.job.id, seed=seed,
                                report=ctx.report, should_stop=ctx.should_stop)
    total = result.get("pairs", 0)
    phase = "canceled" if result.get("canceled") else "done"
    done = total if phase == "done" else result.get("written", 0) + result.get("skipped", 0)
    shards = result.get("shards")
    final = {"shards": {"total": shards, "finished": shards, "running": 0}} if shards else {}
    ctx.report({**ctx.progress(), **final, "phase": phase, "done": done, "total": total,
                "written": result.get("written", 0), "skipped": result.get("skipped", 0), "eta_s": 0},
               force=True)
    return {**result, "seed": seed}


def augment_shard_job(payload: dict[str, Any]) -> dict[str, Any]:
    """One shard of an augmentation job: its pairs, unless another executor has them."""
    spec = AugmentShard.model_validate(payload)
    settings = get_settings()
    ctx = JobContext.current(settings)
    if ctx.job is None:
        raise ValueError("a shard job runs on a worker (it needs the queue's Redis)")
    with ctx.running():
        return run_shard(spec, settings, ctx.job.connection, report=ctx.report, should_stop=ctx.should_stop)


def job_seed(job_id: str) -> int:
    """A seed derived from the job id (used when the payload has none)."""
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=4).digest(), "big") >> 1
