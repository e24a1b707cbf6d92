"""A training job that stops (or dies) resumes from its checkpoint when run again."""

from __future__ import annotations

import shutil
from pathlib import Path

from worker.jobs import JobContext, run_train
from worker.models import ModelStore
from worker.schemas import TrainJobRequest
from worker.settings import Settings


class StopAfter(JobContext):
    """A context without Redis whose cancel flag rises after ``n`` polls."""

    def __init__(self, settings: Settings, n: int) -> None:
        super().__init__(job=None, settings=settings)
        self.polls, self.n = 0, n

    def should_stop(self) -> bool:
        self.polls += 1
        return self.polls > self.n


def test_rerun_resumes_and_publishes(tmp_path: Path, synthetic_dataset_dir: Path) -> None:
    settings = Settings(_env_file=None, data_root=tmp_path / "data", model_store=str(tmp_path / "store"),
                        bundled_models=tmp_path / "bundled", device="cpu")
    shutil.copytree(synthetic_dataset_dir, settings.data_root / "ds")
    req = TrainJobRequest(dataset="ds", name="resumed", preset="tiny", steps_per_scale=3)
    stopped = run_train(req, settings, StopAfter(settings, 2))
    run_dir = Path(stopped["run_dir"])
    assert stopped["canceled"] and (run_dir / "state.pt").is_file()
    assert run_dir == (settings.data_root / "runs" / "local").resolve()
    done = run_train(req, settings, StopAfter(settings, 10**6))
    assert done["resumed"] and done["sha256"] == ModelStore(settings).get("resumed").sha256
