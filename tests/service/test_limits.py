"""Body limits and the API key act on headers, before the body is read, and then hang up.

These talk raw HTTP over a socket: an httpx client would upload the whole body before it
looks at the response, which is exactly what the server must not need.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from tests.service.conftest import LIMITS, LiveServer

CHUNK = 64 * 1024


def _connect(server: LiveServer) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout_s: float) -> bytes:
    """What the server sent until it closed the connection (or ``timeout_s`` passed)."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass
    return data


def test_missing_api_key_is_refused_before_the_body_is_sent(keyed_server: LiveServer) -> None:
    """A body under the limit announced, nothing sent: the 401 comes at once, then EOF."""
    with _connect(keyed_server) as sock:
        sock.sendall(_head("/generate", {
            "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(LIMITS["max_upload_bytes"] - 1),
        }))
        response = _read_response(sock, timeout_s=10)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
    assert b'"unauthorized"' in response and b"connection: close" in response.lower()


def test_wrong_api_key_on_a_chunked_upload_is_refused_before_the_body(
    keyed_server: LiveServer,
) -> None:
    with _connect(keyed_server) as sock:
        sock.sendall(_head("/jobs/augment", {
            "Content-Type": "application/json", "Transfer-Encoding": "chunked", "X-API-Key": "no",
        }))
        response = _read_response(sock, timeout_s=10)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]


def test_chunked_upload_over_the_limit_gets_413_and_the_connection_closes(
    server: LiveServer,
) -> None:
    """The server stops reading after the limit: most of a 64 MB body never gets sent."""
    total = 64 * 2**20
    sent = 0
    with _connect(server) as sock:
        sock.sendall(_head("/generate", {
            "Content-Type": "multipart/form-data; boundary=x", "Transfer-Encoding": "chunked",
        }))
        sock.settimeout(5)
        part = b'--x\r\nContent-Disposition: form-data; name="mask"; filename="m.png"\r\n\r\n'
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        chunk = f"{CHUNK:x}\r\n".encode() + b"\0" * CHUNK + b"\r\n"
        deadline = time.monotonic() + 60
        try:
            while sent < total and time.monotonic() < deadline:
                sock.sendall(chunk)
                sent += CHUNK
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        response = _read_response(sock, timeout_s=5)
    assert b"413" in response.split(b"\r\n", 1)[0], response[:200]
    assert b"upload_too_large" in response
    assert sent < total / 2, f"the server read {sent} bytes of a body over {LIMITS['max_upload_bytes']}"
