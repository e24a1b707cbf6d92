"""The shared settings and the worker's: environment names, parsing, what workers are handed."""

from __future__ import annotations

import pytest

from worker.settings import Settings, WorkerSettings, get_settings


def test_env_names_and_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "")
    monkeypatch.setenv("HISTOSYNTH_ALLOWED_BUCKETS", "a, b")
    monkeypatch.setenv("HISTOSYNTH_JOB_RETRIES", "5")
    monkeypatch.setenv("HISTOSYNTH_WORKER_CLASS", "simple")
    s = WorkerSettings(_env_file=None)
    assert s.redis_url == "redis://r:6379/0"
    assert s.s3_endpoint_url == "http://minio:9000"
    assert s.s3_access_key_id is None
    assert s.allowed_buckets == ["a", "b"]
    assert s.job_retries == 5
    assert s.worker_class == "simple"
    assert Settings(_env_file=None, allowed_buckets='["x"]').allowed_buckets == ["x"]


def test_get_settings_is_the_workers() -> None:
    get_settings.cache_clear()
    assert isinstance(get_settings(), WorkerSettings)


def test_secrets_stay_out_of_repr() -> None:
    s = Settings(_env_file=None, s3_secret_access_key="s-456", redis_url="redis://:pw-789@h/0")
    assert "s-456" not in repr(s) and "pw-789" not in repr(s)


def test_bad_device_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown device"):
        Settings(_env_file=None, device="tpu")


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    s = WorkerSettings(_env_file=None, redis_url="redis://x", allowed_buckets=["a", "b"],
                       job_retries=3, worker_class="simple")
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert WorkerSettings(_env_file=None) == s


def test_shared_env_holds_only_the_shared_fields() -> None:
    s = WorkerSettings(_env_file=None, redis_url="redis://x", worker_class="simple")
    env = s.shared_env()
    assert env["REDIS_URL"] == "redis://x"
    assert "HISTOSYNTH_WORKER_CLASS" not in env
    assert set(env) <= set(s.to_env())


def test_train_precision_reaches_the_training_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.jobs import configs
    from worker.schemas import TrainJobRequest

    monkeypatch.setenv("HISTOSYNTH_TRAIN_PRECISION", "bfloat16")
    s = Settings(_env_file=None)
    req = TrainJobRequest(dataset="d", name="m", preset="tiny")
    assert configs(req, 2, s)[1].precision == "bfloat16"
    assert configs(req, 2, Settings(_env_file=None, train_precision="auto"))[1].precision == "auto"
    monkeypatch.setenv("HISTOSYNTH_TRAIN_PRECISION", "half")
    with pytest.raises(ValueError, match="train_precision"):
        Settings(_env_file=None)
