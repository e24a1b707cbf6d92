"""The allocator: when the command restarts with tcmalloc, how it tells which one is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import allocator
from model.allocator import preload_environment

LIB = "libtcmalloc_minimal.so.4"


def test_auto_preloads_tcmalloc_when_installed() -> None:
    env = preload_environment("auto", {"PATH": "/bin"}, LIB, "linux")
    assert env is not None
    assert env["LD_PRELOAD"] == LIB
    assert env["PATH"] == "/bin"
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40  # no stack traces at 4096^2


def test_an_earlier_preload_is_kept_after_tcmalloc() -> None:
    env = preload_environment("auto", {"LD_PRELOAD": "/opt/libtrace.so"}, LIB, "linux")
    assert env is not None and env["LD_PRELOAD"] == f"{LIB} /opt/libtrace.so"


def test_a_quiet_threshold_set_by_the_user_is_kept() -> None:
    env = preload_environment("tcmalloc", {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": "5"}, LIB, "linux")
    assert env is not None and env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] == "5"


@pytest.mark.parametrize("preloaded", [LIB, "/usr/lib/libjemalloc.so.2", "/x/libmimalloc.so"])
def test_no_restart_when_an_allocator_is_preloaded_already(preloaded: str) -> None:
    # also what stops the restarted command from restarting again
    assert preload_environment("auto", {"LD_PRELOAD": preloaded}, LIB, "linux") is None
    assert preload_environment("tcmalloc", {"LD_PRELOAD": preloaded}, LIB, "linux") is None


def test_system_keeps_the_c_library_malloc() -> None:
    assert preload_environment("system", {}, LIB, "linux") is None


def test_auto_without_tcmalloc_or_off_linux_keeps_the_process() -> None:
    assert preload_environment("auto", {}, None, "linux") is None
    assert preload_environment("auto", {}, LIB, "darwin") is None


def test_tcmalloc_asked_for_but_missing_names_the_package() -> None:
    with pytest.raises(ValueError, match="apt-get install libtcmalloc-minimal4"):
        preload_environment("tcmalloc", {}, None, "linux")


def test_an_unknown_choice_names_the_choices() -> None:
    with pytest.raises(ValueError, match="auto, tcmalloc, system"):
        preload_environment("fast", {}, LIB, "linux")


@pytest.mark.parametrize(("line", "name"), [
    ("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10", "tcmalloc"),
    ("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
    ("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6", "system"),
])
def test_in_use_reads_the_mapped_libraries(tmp_path: Path, line: str, name: str) -> None:
    maps = tmp_path / "maps"
    maps.write_text(f"5600-5610 r--p 0 08:01 2 /usr/bin/python3.11\n{line}\n")
    assert allocator.in_use(maps) == name
    assert allocator.in_use(tmp_path / "missing") == "system"


def test_describe_and_release_in_this_process() -> None:
    allocator.release_free_memory()  # tcmalloc's or glibc's call, whichever is loaded
    line = allocator.describe()
    assert line.startswith("memory allocator: ")
    if allocator.in_use() == "system":
        assert "tcmalloc" in line  # the hint
