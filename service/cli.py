"""The installed ``histosynth`` command: model and worker subcommands, serve, bench serve.

``histosynth serve`` needs no configuration: without ``REDIS_URL`` it starts an embedded
Redis-compatible server (valkey, with a generated password on a private unix socket,
restarted when it dies) under ``<data_root>/redis`` and one worker process, keeps job data
under ``./data`` and models in ``./data/models`` (plus the bundled demo models), then serves
the API with uvicorn. Ctrl-C or SIGTERM stops the server, then the worker and Redis; when
the server is killed outright, they get SIGTERM from the kernel (Linux).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import FrameType
from typing import Any

from model import cli as model_cli
from service.settings import ServiceSettings, get_settings
from worker import cli as worker_cli

log = logging.getLogger("histosynth.service")

JOB_QUEUES = ("train", "augment")


def build_parser() -> argparse.ArgumentParser:
    """model's parser plus the worker's and the service's subcommands."""
    parser = model_cli.build_parser()
    subcommands = parser.subcommands  # type: ignore[attr-defined]
    worker_cli.register(subcommands)
    register(subcommands)
    return parser


def register(subparsers: Any) -> None:
    """Add ``serve`` and ``bench serve``."""
    from service import bench

    p = subparsers.add_parser(
        "serve", help="serve the REST API (embedded Redis and a worker unless REDIS_URL is set)",
        description="Serve the API. Without REDIS_URL an embedded valkey server and one "
        "worker process start too; settings come from the environment / .env.",
    )
    p.add_argument("--host", help="listen address (default: HISTOSYNTH_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: HISTOSYNTH_PORT, 8000)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes to start with the embedded Redis (default 1; 0: none)")
    p.set_defaults(func=cmd_serve)
    bench.register(_bench_subcommands(subparsers))


def _bench_subcommands(subparsers: Any) -> Any:
    """The ``bench`` group's subparsers (model/bench/__init__.py creates the group)."""
    bench = subparsers.choices.get("bench")
    if bench is None:
        bench = subparsers.add_parser("bench", help="benchmarks")
        bench.subcommands = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    return bench.subcommands


def cmd_serve(args: argparse.Namespace) -> int:
    """Start what is missing (Redis, a worker), then serve until SIGINT/SIGTERM."""
    import uvicorn

    from service.app import create_app

    settings = _serve_settings(get_settings(), args)
    settings.data_root.mkdir(parents=True, exist_ok=True)
    with _stop_signals(), ExitStack() as stack:
        try:
            if not settings.redis_url:
                settings = _start_embedded(stack, settings, args.workers)
            log.info("HistoSynth API on http://%s:%d (studio: /, docs: /docs)", settings.host, settings.port)
            uvicorn.run(
                create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(),
            )
        except (KeyboardInterrupt, _Stopped):
            pass  # uvicorn has shut down; the ExitStack now stops the worker and Redis
        log.info("stopping")
    return 0


class _Stopped(Exception):
    """SIGTERM arrived (uvicorn re-raises it after its graceful shutdown)."""


@contextmanager
def _stop_signals() -> Iterator[None]:
    """Turn SIGTERM into an exception so that the children are stopped, not orphaned."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_settings(settings: ServiceSettings, args: argparse.Namespace) -> ServiceSettings:
    updates = {k: getattr(args, k) for k in ("host", "port") if getattr(args, k) is not None}
    return settings.model_copy(update=updates) if updates else settings


def _start_embedded(stack: ExitStack, settings: ServiceSettings, workers: int) -> ServiceSettings:
    """Embedded valkey under ``data_root/redis`` and ``workers`` worker processes, all supervised.

    The password of this start reaches the API and the workers in ``redis_url`` only.
    """
    from worker.embedded import RedisSupervisor, WorkerSupervisor, start_redis
    from worker.storage import EMBEDDED_REDIS_FOLDER

    redis = start_redis(settings.data_root / EMBEDDED_REDIS_FOLDER)
    stack.callback(RedisSupervisor(redis).start().stop)
    settings = settings.model_copy(update={"redis_url": redis.url})
    log.info("embedded Redis (valkey) on %s with a generated password, data in %s",
             redis.socket_path, redis.data_dir)
    if workers > 0:
        supervisor = WorkerSupervisor(list(JOB_QUEUES), settings, workers).start()
        stack.callback(supervisor.stop)
        for proc in supervisor.processes:
            log.info("worker process %d on queues %s", proc.pid, ",".join(JOB_QUEUES))
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the installed ``histosynth`` command."""
    return model_cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
