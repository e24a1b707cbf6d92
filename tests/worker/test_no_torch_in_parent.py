"""The worker's parent process must not import torch (threads + fork hang the work horse)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_worker_modules_do_not_import_torch() -> None:
    code = (
        "import sys, worker.cli, worker.jobs, worker.runtime, worker.queue, worker.embedded, model.cli;"
        "worker.cli.build_parser();"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
