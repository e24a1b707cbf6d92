"""Live servers for the API tests: uvicorn on a free port in a thread, httpx clients.

Every server gets its own model store (a tmp folder holding the tiny model as ``tiny``),
an empty bundled-models folder and small limits so the bad-input cases stay cheap.
"""

from __future__ import annotations

import io
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from service.server import BackgroundServer, free_port
from service.settings import ServiceSettings

MODEL = "tiny"
API_KEY = "test-secret"
LIMITS = {
    "max_upload_bytes": 200_000,
    "max_pixels": 256 * 256,
    "min_mask_side": 16,
    "max_variants": 4,
    "generate_concurrency": 2,
}


def make_settings(root: Path, model_path: Path, **overrides: Any) -> ServiceSettings:
    """Test settings: store ``root/models`` with the tiny model, data root ``root/data``."""
    store = root / "models"
    store.mkdir(parents=True, exist_ok=True)
    if not (store / f"{MODEL}.pt").exists():
        shutil.copy(model_path, store / f"{MODEL}.pt")
    (root / "bundled").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "model_store": str(store), "bundled_models": root / "bundled", "data_root": root / "data",
        "default_model": MODEL, "device": "cpu", "api_key": None, "allowed_buckets": [],
        # a closed port: Redis is "down" unless a test passes a real one
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        **LIMITS,
        **overrides,
    }
    return ServiceSettings(**values)


class LiveServer(BackgroundServer):
    """The API on a free port, plus an httpx client factory."""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@pytest.fixture(scope="session")
def service_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="session")
def server(service_root: Path, tiny_model_path: Path) -> Iterator[LiveServer]:
    """No API key; Redis configured but unreachable."""
    with LiveServer(make_settings(service_root / "open", tiny_model_path)) as live:
        yield live


@pytest.fixture(scope="session")
def keyed_server(service_root: Path, tiny_model_path: Path) -> Iterator[LiveServer]:
    """API key required."""
    settings = make_settings(service_root / "keyed", tiny_model_path, api_key=API_KEY)
    with LiveServer(settings) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# ---- payloads --------------------------------------------------------------------------
def mask_values(h: int = 48, w: int = 64) -> np.ndarray:
    """(H, W) uint8 raw values 0 (stroma), 1 (benign), 2 (tumour)."""
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: h // 2, w // 4: w // 2] = 1
    mask[h // 2:, w // 2:] = 2
    return mask


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def mask_png(h: int = 48, w: int = 64) -> bytes:
    return png_bytes(mask_values(h, w))


def decode_png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def generate(client: httpx.Client, mask: bytes | None = None, filename: str = "mask.png",
             **fields: Any) -> httpx.Response:
    """POST /generate with a mask file and form fields."""
    files = {"mask": (filename, mask if mask is not None else mask_png(), "image/png")}
    data = {k: str(v) for k, v in fields.items()}
    return client.post("/generate", files=files, data=data)


def assert_error(response: httpx.Response, status: int, code: str, *needles: str) -> dict:
    """The response is our JSON error with this status and code, mentioning ``needles``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    for needle in needles:
        assert needle in body["error"]["message"], (needle, body["error"]["message"])
    return body["error"]


# ---- raw HTTP (to see what the server does before a client has sent the whole body) ----
def raw_connect(server: LiveServer) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def raw_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """What the server sent until it closed the connection (or ``timeout_s`` passed)."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data
