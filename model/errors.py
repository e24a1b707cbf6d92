"""Errors a user can act on, shared by every command line and the jobs.

The model raises these with a message that names the problem; callers show the message
(CLI: one line and exit code 2; jobs: a failed job without retries) instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    KeyError,
)


def user_message(exc: BaseException) -> str:
    """The text to show for a user error (a KeyError's argument without its quotes)."""
    return str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn user errors into one line and exit code 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"histosynth: error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("histosynth: interrupted", file=sys.stderr)
        return 130
