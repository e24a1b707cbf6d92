"""``histosynth bench segment``: a smoke run at tiny sizes (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.cli import main


@pytest.mark.parametrize("extra", [[], ["--tile", "32", "--piece", "16"], ["--tile", "0", "--piece", "0"]])
def test_bench_segment_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "segment", "--preset", "tiny", "--size", "40,96", "--repeat", "1", "--threads", "1",
                 "--device", "cpu", "--json", str(out), *extra]) == 0
    result = json.loads(out.read_text())
    assert [r["size"] for r in result["rows"]] == [40, 96]
    small, large = result["rows"]
    assert large["gflop_per_image"] > small["gflop_per_image"] > 0
    assert large["s_per_image"] > 0 and large["conv_gflops"] > 0 and large["peak_mem_mib"] >= 0
    assert "| size |" in capsys.readouterr().out
