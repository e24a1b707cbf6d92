"""``histosynth serve`` and ``histosynth bench serve`` as real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import psutil
import pytest

from service.cli import build_parser
from service.server import free_port
from tests.service.conftest import MODEL, generate, make_settings

REPO = Path(__file__).resolve().parents[2]


def _env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HISTOSYNTH_", "REDIS_URL", "S3_"))}
    env.update(settings_env)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    return env


def test_parser_has_every_subcommand() -> None:
    sub = build_parser().subcommands  # type: ignore[attr-defined]
    assert {"train", "generate", "segment", "worker", "augment", "serve", "bench"} <= set(
        sub.choices)
    assert "serve" in sub.choices["bench"].subcommands.choices


def test_serve_starts_redis_and_worker_and_stops_them(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    settings = make_settings(tmp_path, tiny_model_path)
    env = settings.to_env()
    env.pop("REDIS_URL")  # no Redis configured: serve starts the embedded one
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        cwd=tmp_path, env=_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}", proc)
        assert ready["checks"]["redis"]["ok"], ready
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "valkey-server" in names and "worker" in names
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            r = generate(c)
            assert r.status_code == 200 and r.headers["x-histosynth-model"] == MODEL
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()


@contextmanager
def _serving(tmp_path: Path, tiny_model_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``histosynth serve`` (embedded valkey, one worker) until ready; stderr in serve.log."""
    settings = make_settings(tmp_path, tiny_model_path)
    env = settings.to_env()
    env.pop("REDIS_URL")
    url = f"http://127.0.0.1:{free_port()}"
    with open(tmp_path / "serve.log", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", url.rpartition(":")[2]],
            cwd=tmp_path, env=_env(env), stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        _wait_ready(url, proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()


def _valkey(proc: subprocess.Popen[bytes]) -> psutil.Process | None:
    """The server's valkey child (None between its death and its restart)."""
    found = [c for c in psutil.Process(proc.pid).children() if "valkey" in c.name()]
    assert len(found) <= 1, found
    return found[0] if found else None


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s")
        time.sleep(0.2)


def _redis_ok(url: str) -> bool:
    try:
        return bool(httpx.get(url + "/ready", timeout=5).json()["checks"]["redis"]["ok"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def _workers(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The server's running worker children (not the dead ones it has yet to reap)."""
    found = []
    for child in psutil.Process(proc.pid).children():
        try:
            if "worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # a zombie, or gone
            pass
    return found


def test_serve_supervises_valkey_and_worker_and_takes_them_along_when_killed(
    tmp_path: Path, tiny_model_path: Path, synthetic_dataset_dir: Path
) -> None:
    """valkey killed: restarted, /ready recovers. The worker killed: another one starts and
    runs jobs. serve killed -9: valkey and worker exit."""
    shutil.copytree(synthetic_dataset_dir, tmp_path / "data" / "datasets" / "synth")
    with _serving(tmp_path, tiny_model_path) as (proc, url):
        first = _valkey(proc)
        assert first is not None
        (worker,) = _workers(proc)
        password = unquote(urlsplit(worker.environ()["REDIS_URL"]).password or "")
        assert len(password) >= 32
        # at once: the worker may still be registering, which RQ does not retry (it exits
        # then, and serve starts another)
        first.kill()
        _wait(lambda: _valkey(proc) not in (None, first) and _redis_ok(url), 20, "/ready recovered")
        assert not psutil.pid_exists(first.pid) or first.status() != psutil.STATUS_ZOMBIE
        _wait(lambda: len(_workers(proc)) == 1, 30, "one worker")
        _workers(proc)[0].kill()
        _wait(lambda: len(_workers(proc)) == 1 and _workers(proc)[0].pid != worker.pid, 30, "a new worker")
        job = httpx.post(url + "/jobs/augment", json={"source": "datasets/synth", "output": "out"})
        assert job.status_code == 202, job.text
        status = lambda: httpx.get(f"{url}/jobs/{job.json()['id']}").json()["status"]  # noqa: E731
        _wait(lambda: status() == "finished", 120, "the new worker ran a job")
        second, (last,) = _valkey(proc), _workers(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert second is not None
        gone, alive = psutil.wait_procs([second, last], timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "restarting" in log and "starting another" in log and password not in log
    assert password not in (tmp_path / "data" / "redis" / "valkey.log").read_text()


def test_serve_stops_valkey_when_its_data_folder_is_gone(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    with _serving(tmp_path, tiny_model_path) as (proc, _url):
        valkey = _valkey(proc)
        assert valkey is not None
        shutil.rmtree(tmp_path / "data" / "redis")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        gone, alive = psutil.wait_procs([valkey], timeout=5)
        assert not alive


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"serve exited with {proc.returncode}: {err[-2000:]}")
        try:
            r = httpx.get(url + "/ready", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("serve did not become ready")


def test_bench_serve_writes_table_and_json(tmp_path: Path, tiny_model_path: Path) -> None:
    env = make_settings(tmp_path, tiny_model_path).to_env()
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "service.cli", "bench", "serve", "--size", "32", "--requests",
           "4", "--concurrency", "1,2", "--direct", "2", "--warmup", "1", "--json", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(env), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "| http | /generate | 2 |" in done.stdout.decode()
    rows = json.loads(out.read_text())["rows"]
    modes = [(r["mode"], r["concurrency"]) for r in rows]
    assert modes == [("direct", 1), ("http", 1), ("http", 2)]
    assert all(r["errors"] == 0 and r["images_per_s"] > 0 for r in rows)


@pytest.mark.parametrize(("route", "n"), [("generate", 4), ("segment", 1)])
def test_bench_serve_variants_and_segment(tmp_path: Path, tiny_model_path: Path, route: str, n: int) -> None:
    env = make_settings(tmp_path, tiny_model_path).to_env()
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "service.cli", "bench", "serve", "--route", route, "--n", str(n), "--size", "40",
           "--requests", "2", "--concurrency", "1", "--direct", "1", "--warmup", "0", "--json", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(env), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = json.loads(out.read_text())
    assert result["route"] == route and result["n"] == n
    assert [(r["mode"], r["route"], r["n"]) for r in result["rows"]] == [("direct", route, n), ("http", route, n)]
    assert all(r["errors"] == 0 and r["images_per_s"] > 0 for r in result["rows"])
