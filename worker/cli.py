"""``histosynth worker`` and ``histosynth augment``.

``register(subparsers)`` adds both to the ``histosynth`` command line (service/cli.py);
``python -m worker.cli`` runs them on their own. The worker's parent process never imports
torch: jobs run in spawned work horses (``JobWorker``) that import it themselves.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from glob import glob
from pathlib import Path
from typing import Any

from worker.settings import Settings, get_settings

log = logging.getLogger("histosynth.worker")


def register(subparsers: Any) -> None:
    """Add the ``worker`` and ``augment`` subcommands."""
    _add_worker(subparsers)
    _add_augment(subparsers)


# ---- worker ------------------------------------------------------------------------------
def _add_worker(sub: Any) -> None:
    p = sub.add_parser("worker", help="run an RQ worker for training and augmentation jobs",
                       description="Run jobs from the Redis queues (REDIS_URL or --url).")
    p.add_argument("--queues", default="train,augment", help="comma-separated queues (default: train,augment)")
    p.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    p.add_argument("--url", default=None, help="Redis URL (default: REDIS_URL)")
    p.add_argument("--check", action="store_true",
                   help="only check: exit 0 when a worker of this host is registered (health checks)")
    p.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """Work on the queues until stopped (or until they are empty with ``--burst``)."""
    from rq import Queue

    from worker.queue import connect, redact_url
    from worker.runtime import QUEUES, InlineJobWorker, JobWorker

    settings = get_settings()
    if args.url:
        settings = settings.model_copy(update={"redis_url": args.url})
    names = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise ValueError(f"unknown queue(s) {unknown or names}; choose from {', '.join(QUEUES)}")
    conn = connect(settings)
    wait_for_redis(conn, settings.redis_url, 0.0 if args.check else settings.redis_wait_s)
    if args.check:
        return check_worker(conn)
    worker_class: type = JobWorker
    if settings.worker_class == "simple" or not hasattr(os, "posix_spawn"):
        worker_class = InlineJobWorker
    _log_device(settings)
    worker = worker_class([Queue(n, connection=conn) for n in names], connection=conn)
    log.info("%s on queues %s (Redis %s)", worker_class.__name__, ",".join(names),
             redact_url(settings.redis_url))
    worker.work(burst=args.burst, logging_level=settings.log_level)
    return 0


def wait_for_redis(conn: Any, url: str | None, wait_s: float) -> None:
    """Return once Redis answers PING; a worker may start before its Redis (compose) or while
    an embedded one restarts. Connection errors are retried with growing pauses for
    ``wait_s`` seconds, then (and at once for other errors, a wrong password say) a
    ValueError names the URL, without its password."""
    from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

    from worker.queue import redact_url

    deadline, pause, said = time.monotonic() + wait_s, 0.1, False
    while True:
        try:
            conn.ping()
            return
        except (ConnectionError, TimeoutError) as exc:
            if isinstance(exc, AuthenticationError) or time.monotonic() + pause > deadline:
                waited = f" (waited {wait_s:g} s)" if wait_s else ""
                raise ValueError(f"cannot reach Redis at {redact_url(url)}{waited}: {exc}") from None
            if not said:
                log.info("waiting up to %g s for Redis at %s", wait_s, redact_url(url))
                said = True
            time.sleep(pause)
            pause = min(2.0, pause * 2)
        except Exception as exc:
            raise ValueError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None


def check_worker(conn: Any) -> int:
    """0 when a worker running on this host is registered in Redis, else a ValueError."""
    from rq import Worker

    host = socket.gethostname()
    mine = [w.name for w in Worker.all(connection=conn) if w.hostname == host]
    if not mine:
        raise ValueError(f"no worker of host {host} is registered in Redis")
    print(f"{len(mine)} worker(s) on {host}: {', '.join(mine)}")
    return 0


def _log_device(settings: Settings) -> None:
    """Say which device jobs will use, without importing torch in this process."""
    if settings.device != "auto":
        log.info("jobs will run on %s (HISTOSYNTH_DEVICE)", settings.device)
        return
    if not glob("/dev/nvidia[0-9]*"):
        log.info("jobs will run on cpu (no NVIDIA device found)")
        return

    def probe() -> None:
        code = "import torch; print('cuda: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            log.info("jobs will run on %s", out.stdout.strip() or f"cpu ({out.stderr.strip()[-200:]})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not probe for CUDA: %s", exc)

    threading.Thread(target=probe, name="cuda-probe", daemon=True).start()


# ---- augment -----------------------------------------------------------------------------
def _add_augment(sub: Any) -> None:
    p = sub.add_parser("augment", help="generate image/mask pairs from a folder of masks (no Redis)",
                       description="Bulk augmentation on this machine: the same code as an augment job.")
    p.add_argument("--model", default=None, help="model name in the store, or a .pt file (default: the default model)")
    p.add_argument("--masks", required=True,
                   help="folder or s3://bucket/prefix/ with mask files (or a dataset's masks/), or 'training'")
    p.add_argument("--out", required=True, help="output folder or s3://bucket/prefix/")
    p.add_argument("--variants", type=int, default=1, help="variants per mask (default 1)")
    p.add_argument("--seed", type=int, default=None, help="job seed (default: random, printed)")
    p.add_argument("--noise", type=float, default=1.0, help="noise scale (default 1.0)")
    p.add_argument("--relabel", action="append", default=[], metavar="FROM=TO",
                   help="replace a class by another before generating (repeatable)")
    p.add_argument("--transforms", choices=["none", "flips", "rotations", "all"], default="none",
                   help="geometric copies of each mask (default none)")
    p.add_argument("--format", choices=["files", "webdataset"], default="files",
                   help="files: images/, masks/, records/ (default); webdataset: tar shards under shards/")
    p.add_argument("--samples-per-tar", type=int, default=256,
                   help="webdataset: samples per tar shard (default 256)")
    p.set_defaults(func=run_augment_cli)


def _relabel(pairs: Sequence[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for item in pairs:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--relabel takes FROM=TO class names, got {item!r}")
        out[old.strip()] = new.strip()
    return out or None


def _location(text: str) -> str:
    """Local paths are taken relative to the current folder (``training``/S3 as given)."""
    if text == "training" or "://" in text:
        return text
    return str(Path(text).resolve())


def run_augment_cli(args: argparse.Namespace) -> int:
    """Run an augmentation locally and print its result as JSON."""
    from worker.augment import run_augment
    from worker.schemas import AugmentJobRequest

    settings = get_settings()
    model_path = Path(args.model) if args.model and args.model.endswith(".pt") else None
    if model_path is not None and not model_path.is_file():
        raise FileNotFoundError(f"model file {model_path} does not exist")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    req = AugmentJobRequest(
        source=_location(args.masks), output=_location(args.out),
        model=None if model_path else args.model, variants_per_mask=args.variants, seed=seed,
        noise=args.noise, relabel=_relabel(args.relabel), transforms=args.transforms,
        output_format=args.format, samples_per_tar=args.samples_per_tar,
    )
    result = run_augment(req, settings, job_seed=seed, report=_progress_printer(),
                         should_stop=lambda: False, trusted=True, model_path=model_path)
    print(json.dumps({**result, "seed": seed}, indent=1))
    return 0


def _progress_printer() -> Any:
    last = {"done": 0}

    def report(p: dict[str, Any]) -> None:
        total, done = int(p.get("total", 0)), int(p.get("done", 0))
        if done == total or done - last["done"] >= max(1, total // 10):
            last["done"] = done
            print(f"augment: {done}/{total} pairs ({p.get('skipped', 0)} already there)", file=sys.stderr)

    return report


# ---- standalone ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """A parser with just this package's subcommands (``python -m worker.cli``)."""
    parser = argparse.ArgumentParser(prog="histosynth", description="HistoSynth workers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``worker`` or ``augment``; user errors are one line and exit code 2."""
    from model.errors import run

    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
