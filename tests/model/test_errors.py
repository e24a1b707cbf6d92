"""User errors become one line and exit code 2 (model/errors.py)."""

from __future__ import annotations

import argparse

import pytest

from model.errors import USER_ERRORS, run, user_message


def _parser(exc: BaseException) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="histosynth")
    parser.add_argument("-v", "--verbose", action="store_true")

    def fail(args: argparse.Namespace) -> int:
        raise exc

    parser.set_defaults(func=fail)
    return parser


@pytest.mark.parametrize("exc, shown", [
    (ValueError("bad noise"), "bad noise"),
    (FileNotFoundError("no file x.png"), "no file x.png"),
    (KeyError("unknown class 'x'"), "unknown class 'x'"),
    (PermissionError("read-only out/"), "read-only out/"),
])
def test_user_errors_are_one_line(exc: Exception, shown: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(exc, USER_ERRORS) and user_message(exc) == shown
    assert run(_parser(exc), []) == 2
    assert capsys.readouterr().err == f"histosynth: error: {shown}\n"


def test_other_errors_are_not_swallowed() -> None:
    with pytest.raises(RuntimeError):
        run(_parser(RuntimeError("a bug")), [])
