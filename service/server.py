"""Run the API with uvicorn: in the foreground (``serve``) or from a thread (bench, tests)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn

from service.app import create_app
from service.settings import ServiceSettings


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """uvicorn serving ``create_app(settings)`` from a daemon thread (a context manager).

    Args:
        settings: app settings; ``host`` is used, the port is a free one unless ``port``.
        port: listen on this port instead of a free one.
        log_level: uvicorn's log level.
    """

    def __init__(
        self, settings: ServiceSettings, port: int | None = None, log_level: str = "warning"
    ) -> None:
        self.settings = settings
        self.host = settings.host
        self.port = port or free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host=self.host, port=self.port, log_level=log_level
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout_s: float = 60.0) -> Self:
        """Start serving; returns once the app has started (models loaded)."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to finish and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
