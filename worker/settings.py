"""Settings of the workers, and the base that the HTTP service's settings extend.

Every environment variable the product reads is a field of :class:`Settings` (shared by the
API and the workers: queue, S3, storage, models, jobs), :class:`WorkerSettings` (the
worker process only), ``service.settings.ServiceSettings`` (the HTTP side) or
:class:`LaunchSettings` (read by every ``histosynth`` command before it starts), and a line in
``.env.example``. Values come from the environment, then a ``.env`` file in the working
directory, then the defaults below. External services keep their conventional names
(``REDIS_URL``, ``S3_*``); everything else is ``HISTOSYNTH_<FIELD>``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.allocator import Allocator
from model.device import check_device

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"

# Fields whose environment variable does not carry the HISTOSYNTH_ prefix.
_PLAIN_ENV = {
    "redis_url": "REDIS_URL",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "s3_access_key_id": "S3_ACCESS_KEY_ID",
    "s3_secret_access_key": "S3_SECRET_ACCESS_KEY",
    "s3_region": "S3_REGION",
}


def _env(field: str) -> Any:
    """Accept ``REDIS_URL`` as well as ``HISTOSYNTH_REDIS_URL`` (and so on)."""
    return AliasChoices(_PLAIN_ENV[field], f"HISTOSYNTH_{field.upper()}")


def env_name(field: str) -> str:
    """The environment variable of a settings field (``redis_url`` -> ``REDIS_URL``)."""
    return _PLAIN_ENV.get(field, f"HISTOSYNTH_{field.upper()}")


def empty_is_none(value: Any) -> Any:
    """``S3_ENDPOINT_URL=`` in a .env file means "not set"."""
    return None if isinstance(value, str) and not value.strip() else value


class Settings(BaseSettings):
    """What the API and the workers both read (see ``.env.example`` for every variable).

    Args:
        redis_url: Redis for the job queues; None = ``histosynth serve`` starts an embedded one.
        s3_endpoint_url: S3 API endpoint (MinIO, moto); None = AWS.
        s3_access_key_id: S3 access key; None = boto3's usual credential chain.
        s3_secret_access_key: S3 secret key.
        s3_region: S3 region name.
        allowed_buckets: the only buckets jobs may read from or write to (comma separated).
        data_root: local job inputs and outputs must stay under this folder.
        model_store: where published models live: a path (relative: under ``data_root``),
            ``file://`` URI or ``s3://bucket/prefix``.
        bundled_models: folder of demo models shipped with the code (``<name>.pt``).
        default_model: model used when a request names none.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        train_precision: training jobs' forward passes (``TrainConfig.precision``): ``auto``
            bfloat16 on CUDA and float32 on a CPU; ``bfloat16`` on a CPU too (faster where it
            has AVX512-BF16 or AMX); ``float32`` everywhere.
        max_pixels: largest accepted image or mask (height x width), a decompression-bomb
            guard for uploads and for the masks an augmentation job reads.
        train_job_timeout: seconds a training job may run before RQ kills it.
        augment_job_timeout: seconds an augmentation job may run.
        job_retries: automatic retries after a failure or a dead worker.
        result_ttl: seconds finished jobs (and their results) are kept.
        failure_ttl: seconds failed jobs are kept.
        job_lease_seconds: a running job's lease; a job whose lease lapses (its worker died)
            is retried. Workers renew it every third of this.
        log_level: logging level of the service and workers.
    """

    model_config = SettingsConfigDict(
        env_prefix="HISTOSYNTH_", env_file=".env", extra="ignore", populate_by_name=True
    )

    redis_url: str | None = Field(default=None, validation_alias=_env("redis_url"), repr=False)
    s3_endpoint_url: str | None = Field(default=None, validation_alias=_env("s3_endpoint_url"))
    s3_access_key_id: str | None = Field(default=None, validation_alias=_env("s3_access_key_id"))
    s3_secret_access_key: str | None = Field(
        default=None, validation_alias=_env("s3_secret_access_key"), repr=False
    )
    s3_region: str = Field(default="us-east-1", validation_alias=_env("s3_region"))
    allowed_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    data_root: Path = Path("./data")
    model_store: str = "./models"
    bundled_models: Path = REPO_MODELS
    default_model: str = "prostate-gleason"
    device: str = "auto"
    train_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    max_pixels: int = Field(default=4096 * 4096, gt=0)
    train_job_timeout: int = Field(default=48 * 3600, gt=0)
    augment_job_timeout: int = Field(default=12 * 3600, gt=0)
    job_retries: int = Field(default=2, ge=0)
    result_ttl: int = Field(default=7 * 24 * 3600, gt=0)
    failure_ttl: int = Field(default=30 * 24 * 3600, gt=0)
    job_lease_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"

    @field_validator("allowed_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        """``"a,b"`` or a JSON list ``'["a", "b"]'`` or a list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [b.strip() for b in text.split(",") if b.strip()]
        return value

    @field_validator(
        "redis_url", "s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return check_device(value)

    @property
    def cache_dir(self) -> Path:
        """Local cache for downloaded models and datasets."""
        return self.data_root / ".cache"

    def to_env(self) -> dict[str, str]:
        """Every field of these settings as environment variables."""
        return self._env_of(type(self).model_fields)

    def shared_env(self) -> dict[str, str]:
        """Only the shared fields (of :class:`Settings`) as environment variables: what a
        worker subprocess is handed (never the API key)."""
        return self._env_of(Settings.model_fields)

    def _env_of(self, names: Any) -> dict[str, str]:
        env: dict[str, str] = {}
        for name in names:
            value = getattr(self, name)
            if value is not None:
                env[env_name(name)] = ",".join(value) if isinstance(value, list) else str(value)
        return env


class WorkerSettings(Settings):
    """The worker process's settings: the shared ones plus how jobs are run.

    Args:
        worker_class: ``spawn`` (a fresh process per job) or ``simple`` (in the worker process).
        redis_wait_s: how long a starting worker waits for Redis to answer (it may start
            before Redis, or while an embedded one restarts); 0: one try.
    """

    worker_class: Literal["spawn", "simple"] = "spawn"
    redis_wait_s: float = Field(default=60.0, ge=0)


class LaunchSettings(BaseSettings):
    """What the ``histosynth`` command reads before it loads anything else (its own class, so
    that a bad value of another setting cannot stop commands that never read it).

    Args:
        allocator: ``auto`` restarts the command with tcmalloc preloaded when it is installed
            (CPU training and inference run faster: ``model/allocator.py``); ``tcmalloc``
            requires it; ``system`` keeps the C library's malloc. Subprocesses (workers, jobs)
            inherit the choice.
    """

    model_config = SettingsConfigDict(env_prefix="HISTOSYNTH_", env_file=".env", extra="ignore")

    allocator: Allocator = "auto"


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    """The worker's settings, read once (``get_settings.cache_clear()`` to reread)."""
    return WorkerSettings()
