"""``histosynth serve`` and ``histosynth bench serve`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
