"""Errors a user can act on, shared by every command line and the jobs.

The model raises these with a message that names the problem; callers show the message
(CLI: one line and exit code 2; jobs: a failed job without retries) instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


class UnknownNameError(KeyError):
    """Nothing of this name (a model, a job): the message names it and lists the known ones.

    The one KeyError that is a user error. A bare KeyError is a missing dict key, a bug:
    the CLI shows its traceback and a job that raises it is retried like any crash.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    UnknownNameError,
)


def user_message(exc: BaseException) -> str:
    """The text to show for a user error."""
    return str(exc)


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
