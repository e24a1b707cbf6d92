"""Typed job payloads (what the API accepts and the queue stores) and the job view."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.models import check_name

JobKind = Literal["train", "augment"]
JobStatus = Literal[
    "queued", "started", "finished", "failed", "canceled", "stopped", "scheduled", "deferred"
]
Transforms = Literal["none", "flips", "rotations", "all"]

MAX_LOCATION = 1024
"""Longest location URI (S3 keys have at most 1024 bytes)."""

MAX_JOB_SEED = 2**53 - 1
"""Largest job seed: the largest integer every JSON client (JavaScript too) holds exactly."""


class TrainJobRequest(BaseModel):
    """Train a model on a dataset and publish it to the model store.

    The dataset is a folder with ``images/``, ``masks/`` (paired by file stem) and
    ``classes.json``: a local folder under the data root or ``s3://bucket/prefix/`` in an
    allowed bucket. Training length is given in optimisation steps per scale (the paper's
    epochs over a small tile set amount to a fixed number of steps).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(
        ..., max_length=MAX_LOCATION, description="dataset folder under the data root or s3://bucket/prefix/"
    )
    name: str = Field(..., description="name the model is published under")
    classes: dict[str, Any] | None = Field(
        None, description="class table (classes.json content) overriding the dataset's own"
    )
    layout: Literal["folder", "glas"] = "folder"
    preset: Literal["tiny", "base", "paper"] = "base"
    mode: Literal["generate", "joint", "ssl"] = "joint"
    scales: int | None = Field(None, ge=2, le=8, description="number of scales (preset default)")
    steps_per_scale: int | None = Field(
        None, ge=1, le=1_000_000, description="optimisation steps per scale (preset default)"
    )
    seed: int = Field(0, ge=0, le=MAX_JOB_SEED)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)


class AugmentJobRequest(BaseModel):
    """Generate image/mask pairs from a set of masks with a model.

    ``source`` is ``s3://bucket/prefix/`` (mask files, or a dataset whose ``masks/`` folder
    is used), a local dataset/mask folder under the data root, or ``training``: the masks of
    the dataset the model was trained on, when its metadata names a folder that still
    exists. Each source mask (times each geometric transform) yields ``variants_per_mask``
    pairs; pair ``i`` uses a seed derived from (``seed``, ``i``), so a retried job writes
    the same pairs and skips those already present.
    """

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        ..., max_length=MAX_LOCATION, description="s3://bucket/prefix/, a local folder, or 'training'"
    )
    output: str = Field(
        ..., max_length=MAX_LOCATION,
        description="s3://bucket/prefix/ or a new folder under the data root (not the root itself, "
        "nor its reserved folders redis, .cache, runs, nor the model store)",
    )
    model: str | None = Field(None, description="model name (default: the default model)")
    variants_per_mask: int = Field(1, ge=1, le=256)
    seed: int | None = Field(
        None, ge=0, le=MAX_JOB_SEED, description="job seed (random when absent)"
    )
    noise: float = Field(1.0, ge=0.0, le=10.0)
    relabel: dict[str, str] | None = Field(
        None, description="replace classes by name before generating, e.g. {'low_grade': 'high_grade'}"
    )
    transforms: Transforms = Field(
        "none",
        description="geometric copies of every source mask: none, flips (h, v), "
        "rotations (90, 180, 270) or all 8 flips/rotations",
    )

    @field_validator("model")
    @classmethod
    def _valid_model(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)


class JobInfo(BaseModel):
    """A job as the API reports it.

    ``progress`` for training: scale, scale_rank, num_scales, step, steps_per_scale,
    done_steps, total_steps, losses, eta_s, elapsed_s; for augmentation: done, total,
    skipped, eta_s. ``error`` is one line (the last line of the traceback).
    """

    id: str
    kind: str
    status: JobStatus
    description: str = ""
    progress: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False
    retries_left: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
