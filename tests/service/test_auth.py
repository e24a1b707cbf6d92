"""The API key is checked from the headers, before the body is read, and then hangs up.

These talk raw HTTP over a socket: an httpx client would upload the whole body before it
looks at the response, which is exactly what the server must not need.
"""

from __future__ import annotations

from tests.service.conftest import LIMITS, LiveServer, raw_connect, raw_head, read_until_closed


def test_missing_api_key_is_refused_before_the_body_is_sent(keyed_server: LiveServer) -> None:
    """A body under the limit announced, nothing sent: the 401 comes at once, then EOF."""
    with raw_connect(keyed_server) as sock:
        sock.sendall(raw_head("/generate", {
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(LIMITS["max_upload_bytes"] - 1),
        }))
        response = read_until_closed(sock, timeout_s=10)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
    assert b'"unauthorized"' in response and b"connection: close" in response.lower()


def test_wrong_api_key_on_a_chunked_upload_is_refused_before_the_body(
    keyed_server: LiveServer,
) -> None:
    with raw_connect(keyed_server) as sock:
        sock.sendall(raw_head("/jobs/augment", {
            "Content-Type": "application/json", "Transfer-Encoding": "chunked", "X-API-Key": "no",
        }))
        response = read_until_closed(sock, timeout_s=10)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
