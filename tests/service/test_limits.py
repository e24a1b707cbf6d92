"""Body limits act on headers and while the body streams in, and then hang up.

Raw HTTP over a socket: an httpx client would upload the whole body before it looks at the
response, which is exactly what the server must not need.
"""

from __future__ import annotations

import time

from tests.service.conftest import LIMITS, LiveServer, raw_connect, raw_head, read_until_closed

CHUNK = 64 * 1024


def test_chunked_upload_over_the_limit_gets_413_and_the_connection_closes(
    server: LiveServer,
) -> None:
    """The server stops reading after the limit: most of a 64 MB body never gets sent."""
    total = 64 * 2**20
    sent = 0
    with raw_connect(server) as sock:
        sock.sendall(raw_head("/generate", {
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
        response = read_until_closed(sock, timeout_s=5)
    assert b"413" in response.split(b"\r\n", 1)[0], response[:200]
    assert b"upload_too_large" in response
    assert sent < total / 2, f"the server read {sent} bytes of a body over {LIMITS['max_upload_bytes']}"
