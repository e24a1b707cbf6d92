"""The embedded valkey: password, private unix socket, supervision, shutdown without its folder."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError
from rq import Queue

from worker.embedded import RedisSupervisor, start_redis, valkey_binary


def test_embedded_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    assert valkey_binary().name == "valkey-server"
    server = start_redis(tmp_path / "redis", persist=False)
    try:
        conn = Redis.from_url(server.url)
        assert conn.ping()
        conn.set("k", b"v")
        assert conn.get("k") == b"v"
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None and not server.ping()
    assert not server.socket_dir.exists()


def test_password_socket_only_and_secret_nowhere_visible(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", persist=False)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            Redis(unix_socket_path=str(server.socket_path)).ping()  # no password
        assert server.socket_dir.stat().st_mode & 0o077 == 0  # private folder
        assert server.process is not None
        valkey = psutil.Process(server.process.pid)
        assert not [c for c in valkey.net_connections(kind="inet") if c.status == "LISTEN"]
        assert server.password not in " ".join(valkey.cmdline())
        assert server.password not in (server.data_dir / "valkey.log").read_text()
        assert not list(server.data_dir.glob("*.conf"))
    finally:
        server.stop()


def test_supervisor_restarts_a_killed_server(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    restarted: list[int] = []
    supervisor = RedisSupervisor(server, interval_s=0.1,
                                 on_restart=lambda s: restarted.append(s.process.pid)).start()
    try:
        client = Redis.from_url(server.url)
        client.set("kept", b"1")
        time.sleep(1.5)  # appendfsync everysec
        assert server.process is not None
        first = server.process
        first.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while not (restarted and server.ping()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert restarted and restarted[0] != first.pid
        assert first.returncode == -signal.SIGKILL  # reaped: no zombie
        assert client.get("kept") == b"1"  # same socket and password, data kept
    finally:
        supervisor.stop()
    assert not server.alive()


def test_stops_at_once_when_its_folder_is_gone(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    Redis.from_url(server.url).set("k", b"v")
    shutil.rmtree(tmp_path / "redis")
    started = time.monotonic()
    server.stop(timeout_s=10)
    assert server.process is not None and server.process.returncode == 0
    assert time.monotonic() - started < 5


def test_sigterm_exits_even_when_the_final_save_fails(tmp_path: Path) -> None:
    """What an orphan got when its data folder was removed: it must still exit."""
    server = start_redis(tmp_path / "redis")
    Redis.from_url(server.url).set("k", b"v")
    shutil.rmtree(tmp_path / "redis")
    assert server.process is not None
    server.process.terminate()
    assert server.process.wait(10) == 0
    server.stop()


def test_work_horse_command_line_holds_no_password(rq_worker: Any, redis_url: str) -> None:
    """RQ writes the connection's arguments into the horse's `python -c`; not the password."""
    password = Redis.from_url(redis_url).connection_pool.connection_kwargs["password"]
    worker = rq_worker()
    job = Queue("augment", connection=Redis.from_url(redis_url)).enqueue("time.sleep", 3)
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while job.get_status(refresh=True).value != "finished" and time.monotonic() < deadline:
        for horse in worker.horses():
            try:
                seen.append(" ".join(horse.cmdline()))
            except psutil.Error:
                pass
        time.sleep(0.1)
    assert job.get_status(refresh=True).value == "finished", worker.log()[-2000:]
    assert seen and any("worker_class" in s or "-c" in s for s in seen)
    assert not [s for s in seen if password in s]
