"""Settings of the HTTP service: the shared ones (``worker.settings.Settings``) plus the API's.

``histosynth serve`` and ``create_app()`` read these; the API hands only the shared fields
to the worker processes it starts (see ``Settings.shared_env``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field, field_validator

from worker.settings import Settings, empty_is_none


class ServiceSettings(Settings):
    """The API's configuration from the environment (``.env.example`` lists every variable).

    Args:
        api_key: when set, every route but the probes (/health, /ready) and the API docs
            needs ``X-API-Key``.
        max_upload_bytes: largest accepted upload.
        min_mask_side: smallest accepted mask side in pixels.
        max_variants: most variants per generate request.
        generate_concurrency: generate/segment calls that run at once; the rest wait.
        host: address ``histosynth serve`` listens on.
        port: port ``histosynth serve`` listens on.
    """

    api_key: str | None = Field(default=None, repr=False)
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    min_mask_side: int = Field(default=32, gt=0)
    max_variants: int = Field(default=16, gt=0)
    generate_concurrency: int = Field(default=2, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return empty_is_none(value)


@lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    """The API's settings, read once (``get_settings.cache_clear()`` to reread)."""
    return ServiceSettings()
