"""User errors become one line and exit code 2 (model/errors.py)."""

from __future__ import annotations

import argparse

import pytest

from model.errors import USER_ERRORS, UnknownNameError, run, user_message


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
    (UnknownNameError("unknown model 'x'; available models: a"), "unknown model 'x'; available models: a"),
    (PermissionError("read-only out/"), "read-only out/"),
])
def test_user_errors_are_one_line(exc: Exception, shown: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(exc, USER_ERRORS) and user_message(exc) == shown
    assert run(_parser(exc), []) == 2
    assert capsys.readouterr().err == f"histosynth: error: {shown}\n"


@pytest.mark.parametrize("exc", [RuntimeError("a bug"), KeyError("missing_dict_key")])
def test_other_errors_are_not_swallowed(exc: Exception) -> None:
    """A bare KeyError is a missing dict key, a bug: it shows as one (and jobs retry it)."""
    assert not isinstance(exc, USER_ERRORS)
    with pytest.raises(type(exc)):
        run(_parser(exc), [])


def test_unknown_name_error_reads_without_quotes() -> None:
    exc = UnknownNameError("unknown job 'x'")
    assert isinstance(exc, KeyError) and str(exc) == "unknown job 'x'"
