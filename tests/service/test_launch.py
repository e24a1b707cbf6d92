"""The installed ``histosynth`` command restarts itself with tcmalloc (service/launch.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.allocator import find_tcmalloc

COMMAND = Path(sys.executable).parent / "histosynth"
pytestmark = pytest.mark.skipif(not COMMAND.exists(), reason="the histosynth command is not installed here")


def _run(tmp_path: Path, allocator: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["HISTOSYNTH_ALLOCATOR"] = allocator
    return subprocess.run([str(COMMAND), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


def _allocator_of_a_bench(tmp_path: Path, allocator: str) -> str:
    out = tmp_path / f"{allocator}.json"
    done = _run(tmp_path, allocator, "bench", "train", "--preset", "tiny", "--steps", "1", "--warmup", "0",
                "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "memory allocator: " in done.stdout
    return json.loads(out.read_text())["allocator"]


def test_auto_runs_with_tcmalloc_where_installed_and_system_without(tmp_path: Path) -> None:
    # .ci/run installs libtcmalloc-minimal4, so CI takes the restart
    expected = "tcmalloc" if find_tcmalloc() else "system"
    assert _allocator_of_a_bench(tmp_path, "auto") == expected
    assert _allocator_of_a_bench(tmp_path, "system") == "system"


def test_a_bad_allocator_setting_is_a_clear_error(tmp_path: Path) -> None:
    done = _run(tmp_path, "fastest", "--help")
    assert done.returncode == 2
    assert "HISTOSYNTH_ALLOCATOR" in done.stderr and "'auto', 'tcmalloc' or 'system'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(find_tcmalloc() is not None, reason="tcmalloc is installed here")
def test_tcmalloc_required_but_missing_is_a_clear_error(tmp_path: Path) -> None:
    done = _run(tmp_path, "tcmalloc", "--help")
    assert done.returncode == 2 and "apt-get install libtcmalloc-minimal4" in done.stderr
