"""The embedded valkey: password, private unix socket, supervision, shutdown without its folder;
supervised worker processes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError
from rq import Queue, Worker

from worker.embedded import RedisSupervisor, WorkerSupervisor, start_redis, valkey_binary
from worker.settings import Settings


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


def _until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.1)


def test_worker_supervisor_replaces_a_dead_worker_and_stops_them_all(redis_url: str, tmp_path: Path) -> None:
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    settings = Settings(_env_file=None, redis_url=redis_url, data_root=tmp_path / "data")
    started: list[subprocess.Popen[bytes]] = []
    supervisor = WorkerSupervisor(["augment"], settings, 2, interval_s=0.1, on_restart=started.append).start()
    try:
        first = list(supervisor.processes)
        _until(lambda: len(Worker.all(connection=conn)) == 2, 60, "two workers registered")
        first[0].kill()
        _until(lambda: bool(started), 15, "a new worker started")
        assert supervisor.processes == [started[0], first[1]] and supervisor.restarts == 1
        pids = lambda: {w.pid for w in Worker.all(connection=conn)}  # noqa: E731
        _until(lambda: started[0].pid in pids(), 60, "the new worker registered")
        first[1].kill()  # the new one has to run the job
        blocked = lambda: sum("b" in c["flags"] for c in conn.client_list())  # noqa: E731
        _until(lambda: blocked() == 1, 15, "valkey saw the killed worker's blocking pop end")
        job = Queue("augment", connection=conn).enqueue("time.sleep", 0)
        _until(lambda: job.get_status(refresh=True).value == "finished", 60, "a job ran")
    finally:
        supervisor.stop()
    assert all(p.poll() is not None for p in [*supervisor.processes, *started])
    assert first[0].returncode == -signal.SIGKILL


def test_worker_supervisor_backs_off_and_stops_during_its_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that cannot reach Redis exit at once: the pause before the next start doubles
    (2 s, then 4 s), and a stop does not wait for the pause to end."""
    monkeypatch.setenv("HISTOSYNTH_REDIS_WAIT_S", "0")
    url = f"unix://{tmp_path / 'nothing.sock'}"
    settings = Settings(_env_file=None, redis_url=url, data_root=tmp_path / "data")
    supervisor = WorkerSupervisor(["augment"], settings, 1, interval_s=1.0, max_pause_s=60).start()
    first = supervisor.processes[0]
    _until(lambda: supervisor.restarts == 1, 30, "a restart")
    assert first.returncode not in (None, 0)
    _until(lambda: supervisor.processes[0].poll() is not None, 30, "the second worker exited")
    time.sleep(3.0)  # past a pause of 2 s again, inside the doubled one of 4 s
    assert supervisor.restarts == 1
    t0 = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - t0 < 0.5  # at least 0.9 s of the 4 s pause was left
    assert supervisor.restarts == 1
