"""The embedded valkey server starts on a free port, answers and stops."""

from __future__ import annotations

from pathlib import Path

from redis import Redis

from worker.embedded import start_redis, valkey_binary


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
    assert server.process.poll() is not None and not server.ping()
