"""The API's settings extend the shared ones; .env.example lists every variable of both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import ServiceSettings, get_settings
from worker.settings import LaunchSettings, Settings, WorkerSettings

REPO = Path(__file__).resolve().parents[2]


def test_api_fields_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTOSYNTH_MAX_PIXELS", "1000")
    monkeypatch.setenv("HISTOSYNTH_API_KEY", "")
    monkeypatch.setenv("HISTOSYNTH_PORT", "8080")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    s = ServiceSettings(_env_file=None)
    assert (s.max_pixels, s.api_key, s.port, s.redis_url) == (1000, None, 8080, "redis://r:6379/0")
    get_settings.cache_clear()
    assert isinstance(get_settings(), ServiceSettings)
    get_settings.cache_clear()


def test_api_key_stays_out_of_repr_and_of_the_workers_env() -> None:
    s = ServiceSettings(_env_file=None, api_key="k-123", redis_url="redis://x")
    assert "k-123" not in repr(s)
    assert s.to_env()["HISTOSYNTH_API_KEY"] == "k-123"
    assert "HISTOSYNTH_API_KEY" not in s.shared_env()
    assert s.shared_env()["REDIS_URL"] == "redis://x"


def test_worker_and_service_share_only_the_base() -> None:
    shared = set(Settings.model_fields)
    worker_only = set(WorkerSettings.model_fields) - shared
    service_only = set(ServiceSettings.model_fields) - shared
    assert worker_only == {"worker_class", "redis_wait_s"}
    assert {"api_key", "max_upload_bytes", "host", "port"} <= service_only
    assert not worker_only & service_only


def test_env_example_lists_every_variable() -> None:
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    secrets = {"redis_url": "r", "s3_endpoint_url": "e", "s3_access_key_id": "a",
               "s3_secret_access_key": "s"}
    every = set(WorkerSettings(_env_file=None, **secrets).to_env())
    every |= set(ServiceSettings(_env_file=None, api_key="k", **secrets).to_env())
    every |= {f"HISTOSYNTH_{name.upper()}" for name in LaunchSettings.model_fields}
    assert every - listed == set()
