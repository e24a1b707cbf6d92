"""Queue helpers that need no Redis."""

from __future__ import annotations

import pytest

from worker.queue import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("unix://:s3cret@/tmp/x/valkey.sock?db=0", "unix://:***@/tmp/x/valkey.sock?db=0"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        (None, "(not set)"),
    ],
)
def test_redact_url(url: str | None, shown: str) -> None:
    assert redact_url(url) == shown
