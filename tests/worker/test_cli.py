"""The worker command (worker/cli.py): waiting for Redis at start, with a real valkey server."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from redis import Redis

from worker.cli import wait_for_redis
from worker.embedded import EmbeddedRedis
from worker.queue import connect
from worker.settings import WorkerSettings


def _server(tmp_path: Path, password: str | None = None) -> EmbeddedRedis:
    socket_dir = Path(tempfile.mkdtemp(prefix="histosynth-valkey-"))
    return EmbeddedRedis(tmp_path / "redis", socket_dir, password or secrets.token_urlsafe(32), persist=False)


def test_a_worker_waits_for_a_redis_that_starts_late(tmp_path: Path) -> None:
    server = _server(tmp_path)
    conn = connect(WorkerSettings(redis_url=server.url))
    outcome: list[BaseException | float] = []

    def wait() -> None:
        t0 = time.monotonic()
        try:
            wait_for_redis(conn, server.url, 30.0)
            outcome.append(time.monotonic() - t0)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    server.start()  # from this thread: valkey dies with the thread that started it
    try:
        waiter.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], float) and outcome[0] >= 0.9, outcome
        assert conn.ping()
    finally:
        server.stop()


def test_no_redis_is_an_error_naming_the_url_without_its_password(tmp_path: Path) -> None:
    server = _server(tmp_path, password="s3cret-password")  # never started
    conn = connect(WorkerSettings(redis_url=server.url))
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"cannot reach Redis at unix://:\*\*\*@.*\(waited 0.5 s\)") as err:
        wait_for_redis(conn, server.url, 0.5)
    assert time.monotonic() - t0 < 5 and "s3cret" not in str(err.value)
    with pytest.raises(ValueError, match="cannot reach Redis") as err:  # one try: no wait
        wait_for_redis(conn, server.url, 0.0)
    assert "waited" not in str(err.value)
    shutil.rmtree(server.socket_dir, ignore_errors=True)


def test_a_wrong_password_fails_at_once(tmp_path: Path) -> None:
    server = _server(tmp_path)
    server.start()
    try:
        wrong = server.url.replace(server.url.split(":")[2].split("@")[0], "wrong-password")
        t0 = time.monotonic()
        with pytest.raises(ValueError, match="cannot reach Redis"):
            wait_for_redis(Redis.from_url(wrong), wrong, 30.0)
        assert time.monotonic() - t0 < 5
    finally:
        server.stop()
