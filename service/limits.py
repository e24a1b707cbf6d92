"""Request body size limit, enforced from ``Content-Length`` and again while reading.

A pure ASGI middleware: a declared length over the limit is refused before the body is
read; a body without a declared length (chunked) or with a false one is counted as it
streams in and refused the moment it passes the limit, so an upload never has to be
held in full before it can be rejected.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response


def too_large(limit: int) -> ApiError:
    """413 naming the limit."""
    return ApiError(
        413,
        "upload_too_large",
        f"request body is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB); "
        "send a smaller file or raise MAX_UPLOAD_BYTES",
        {"max_upload_bytes": limit},
        headers={"Connection": "close"},  # hang up instead of reading the rest of the body
    )


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with a 413 JSON error.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest accepted request body, multipart overhead included.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            err = too_large(self.max_bytes)
            response = error_response(
                err.status_code, err.code, err.message, err.details, err.headers
            )
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's form parsing unchanged.
                    raise too_large(self.max_bytes)
            return message

        return counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
