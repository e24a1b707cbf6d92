"""The one settings class: environment names, parsing, and .env.example coverage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_env_names_and_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "")
    monkeypatch.setenv("HISTOSYNTH_ALLOWED_BUCKETS", "a, b")
    monkeypatch.setenv("HISTOSYNTH_MAX_PIXELS", "1000")
    s = Settings(_env_file=None)
    assert s.redis_url == "redis://r:6379/0"
    assert s.s3_endpoint_url == "http://minio:9000"
    assert s.s3_access_key_id is None
    assert s.allowed_buckets == ["a", "b"]
    assert s.max_pixels == 1000
    assert Settings(_env_file=None, allowed_buckets='["x"]').allowed_buckets == ["x"]


def test_secrets_stay_out_of_repr() -> None:
    s = Settings(_env_file=None, api_key="k-123", s3_secret_access_key="s-456")
    assert "k-123" not in repr(s) and "s-456" not in repr(s)


def test_bad_device_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown device"):
        Settings(_env_file=None, device="tpu")


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(_env_file=None, redis_url="redis://x", allowed_buckets=["a", "b"], max_variants=3)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings(_env_file=None) == s


def test_env_example_lists_every_variable() -> None:
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    every = set(Settings(_env_file=None, redis_url="r", s3_endpoint_url="e", s3_access_key_id="a",
                         s3_secret_access_key="s", api_key="k").to_env())
    assert every - listed == set()
