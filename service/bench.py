"""``histosynth bench serve``: HTTP latency and throughput of /generate vs direct calls.

Concurrent clients send the same mask to ``POST /generate`` (a running server given with
``--url``, or one started in this process from the current settings). The baseline is
``Pipeline.generate`` called directly, one call at a time, in this process. Results: a
table (p50/p99 latency, images/s) on stdout and a JSON file.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from model.report import Column, markdown_table
from service.settings import ServiceSettings, get_settings


def register(bench_subparsers: Any) -> None:
    """Add ``bench serve`` to the ``bench`` group."""
    p = bench_subparsers.add_parser(
        "serve", help="latency and images/s of POST /generate against direct pipeline calls"
    )
    p.add_argument("--url", help="a running server (default: start one in this process)")
    p.add_argument("--api-key", help="X-API-Key for --url (default: HISTOSYNTH_API_KEY)")
    p.add_argument("--model", help="model name (default: the default model; with no model in "
                   "the store a random-weight 'base' model is benchmarked)")
    p.add_argument("--size", type=int, default=256, help="square mask side (default 256)")
    p.add_argument("--n", type=int, default=1, help="variants per request (default 1)")
    p.add_argument("--concurrency", type=_ints, default=[1, 4],
                   help="concurrent clients, one HTTP row each, e.g. 1,4,8 (default 1,4)")
    p.add_argument("--requests", type=int, default=24, help="requests per HTTP row (default 24)")
    p.add_argument("--direct", type=int, default=8,
                   help="direct Pipeline.generate calls for the baseline (0: skip; default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--json", default="bench-serve.json", help="where to write the results")
    p.set_defaults(func=cmd_bench_serve)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,4,8, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """Run the benchmark and print/write its results."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    settings = get_settings()
    with ExitStack() as stack:
        settings, model = _choose_model(stack, settings, args.model, started=args.url is None)
        url = args.url or _start_server(stack, settings)
        api_key = args.api_key or settings.api_key
        mask = _mask_for(settings, model, args.size)
        rows = []
        if args.direct > 0:
            rows.append(bench_direct(settings, model, mask, args.n, args.direct, args.warmup))
        for c in args.concurrency:
            rows.append(
                bench_http(url, api_key, model, mask, args.n, c, args.requests, args.warmup)
            )
    print(format_table(rows))
    result = {"url": args.url or "in-process server", "model": model, "size": args.size,
              "n": args.n, "machine": platform.platform(), "rows": rows}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def _choose_model(
    stack: ExitStack, settings: ServiceSettings, model: str | None, *, started: bool
) -> tuple[ServiceSettings, str]:
    """The model to benchmark; a random-weight one in a temp store when the store is empty."""
    from worker.models import ModelStore

    name = model or settings.default_model
    if model or not started or name in ModelStore(settings).names():
        return settings, name
    from model.bench.generate import random_model

    store = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    path = random_model("base", 4, store)
    path.rename(store / "random-base.pt")
    empty = store / "bundled"
    empty.mkdir()
    return settings.model_copy(update={
        "model_store": str(store), "bundled_models": empty, "default_model": "random-base",
    }), "random-base"


def _start_server(stack: ExitStack, settings: ServiceSettings) -> str:
    from service.server import BackgroundServer

    server = BackgroundServer(settings.model_copy(update={"host": "127.0.0.1", "api_key": None}))
    stack.enter_context(server)
    return server.url


def _mask_for(settings: ServiceSettings, model: str, size: int) -> np.ndarray:
    """A (size, size) index mask of Voronoi regions over the model's classes."""
    from model.checkpoint import read_payload
    from worker.models import ModelStore

    num_classes = len(read_payload(ModelStore(settings).local_path(model))["classes"]["classes"])
    rng = np.random.default_rng(0)
    points = rng.uniform(0, size, (24, 2))
    labels = rng.integers(0, num_classes, len(points))
    yy, xx = np.mgrid[0:size, 0:size]
    d = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2  # (H, W, P)
    return labels[d.argmin(-1)].astype(np.uint8)


def bench_direct(
    settings: ServiceSettings, model: str, mask: np.ndarray, n: int, calls: int, warmup: int
) -> dict[str, Any]:
    """Sequential ``Pipeline.generate`` calls in this process (no HTTP, no PNG)."""
    from model.pipeline import load_pipeline
    from worker.models import ModelStore

    pipe = load_pipeline(ModelStore(settings).local_path(model), device=settings.device)
    for i in range(warmup):
        pipe.generate(mask, n=n, seed=i, encoding="index")
    latencies = []
    start = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        pipe.generate(mask, n=n, seed=i, encoding="index")
        latencies.append(time.perf_counter() - t)
    return _row("direct", 1, n, mask.shape[0], latencies, time.perf_counter() - start, 0)


def bench_http(
    url: str, api_key: str | None, model: str, mask: np.ndarray, n: int, concurrency: int,
    requests: int, warmup: int,
) -> dict[str, Any]:
    """``requests`` POST /generate calls from ``concurrency`` client threads."""
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    body = buf.getvalue()
    fields = {"n": str(n), "model": model, "encoding": "index",
              "format": "png" if n == 1 else "zip"}
    headers = {"X-API-Key": api_key} if api_key else {}

    def call(i: int) -> tuple[float, bool]:
        with httpx.Client(base_url=url, timeout=600, headers=headers) as client:
            t = time.perf_counter()
            r = client.post("/generate", files={"mask": ("mask.png", body, "image/png")},
                            data={**fields, "seed": str(i)})
            return time.perf_counter() - t, r.status_code == 200

    for i in range(warmup):
        call(i)
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(call, range(requests)))
    wall = time.perf_counter() - start
    ok = [t for t, good in results if good]
    return _row("http", concurrency, n, mask.shape[0], ok, wall, len(results) - len(ok))


def _row(mode: str, concurrency: int, n: int, size: int, latencies: list[float], wall: float,
         errors: int) -> dict[str, Any]:
    lat = np.array(latencies or [float("nan")]) * 1000
    return {
        "mode": mode, "concurrency": concurrency, "requests": len(latencies), "errors": errors,
        "n": n, "size": size, "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)), "images_per_s": len(latencies) * n / wall,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    return markdown_table(_COLUMNS, rows)


_COLUMNS: list[Column] = [
    ("mode", "l", lambda r: f"{r['mode']}"),
    ("clients", "r", lambda r: f"{r['concurrency']}"),
    ("requests", "r", lambda r: f"{r['requests']}"),
    ("errors", "r", lambda r: f"{r['errors']}"),
    ("n", "r", lambda r: f"{r['n']}"),
    ("size", "r", lambda r: f"{r['size']}"),
    ("p50 ms", "r", lambda r: f"{r['p50_ms']:.1f}"),
    ("p99 ms", "r", lambda r: f"{r['p99_ms']:.1f}"),
    ("images/s", "r", lambda r: f"{r['images_per_s']:.2f}"),
]
