"""Job routes with a real Redis (valkey), real RQ worker processes and the live API."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import LiveServer, assert_error, generate, make_settings

BUCKET = "histosynth-test"
FINAL = ("finished", "failed", "canceled", "stopped")


@pytest.fixture(scope="module")
def jobs_server(
    service_root: Path, tiny_model_path: Path, redis_url: str, synthetic_dataset_dir: Path
) -> Iterator[LiveServer]:
    settings = make_settings(
        service_root / "jobs", tiny_model_path, redis_url=redis_url, allowed_buckets=[BUCKET],
        job_retries=0,
    )
    shutil.copytree(synthetic_dataset_dir, settings.data_root / "datasets" / "synth")
    with LiveServer(settings) as live:
        yield live


@pytest.fixture()
def api(jobs_server: LiveServer, redis_conn: Any, rq_worker: Any) -> Iterator[httpx.Client]:
    """A client of the jobs server with an emptied Redis and one worker process running."""
    rq_worker(env=jobs_server.settings.to_env())
    with jobs_server.client() as c:
        yield c


def wait_for(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in FINAL:
            return r.json()
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {r.json()}")


def test_augment_job_writes_pairs_and_manifest(api: httpx.Client, jobs_server: LiveServer) -> None:
    payload = {"source": "datasets/synth", "output": "out/aug", "variants_per_mask": 2, "seed": 5}
    r = api.post("/jobs/augment", json=payload)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "augment" and job["status"] in ("queued", "started")
    done = wait_for(api, job["id"])
    assert done["status"] == "finished", done
    lines = (jobs_server.settings.data_root / "out/aug/manifest.jsonl").read_text().splitlines()
    assert len(lines) == 8  # 4 masks x 2 variants
    assert json.loads(lines[0])["model"] == "tiny"
    assert job["id"] in [j["id"] for j in api.get("/jobs").json()]


def test_train_job_publishes_a_model_served_without_restart(api: httpx.Client) -> None:
    payload = {"dataset": "datasets/synth", "name": "fresh", "preset": "tiny", "scales": 2,
               "steps_per_scale": 2}
    assert_error(generate(api, model="fresh"), 404, "unknown_model")
    r = api.post("/jobs/train", json=payload)
    assert r.status_code == 202, r.text
    done = wait_for(api, r.json()["id"], timeout_s=120)
    assert done["status"] == "finished", done
    assert done["result"]["name"] == "fresh"
    r = generate(api, model="fresh", seed=1)
    assert r.status_code == 200, r.text
    assert r.headers["x-histosynth-model-sha256"] == done["result"]["sha256"]


def test_cancel_train_job(api: httpx.Client) -> None:
    payload = {"dataset": "datasets/synth", "name": "never", "preset": "tiny",
               "steps_per_scale": 100000}
    job = api.post("/jobs/train", json=payload).json()
    r = api.delete(f"/jobs/{job['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["cancel_requested"] or r.json()["status"] == "canceled"
    assert wait_for(api, job["id"])["status"] == "canceled"


@pytest.mark.parametrize(
    ("payload", "status", "code", "needle"),
    [
        ({"source": "training", "output": "s3://other-bucket/x/"}, 403, "location_not_allowed",
         "other-bucket"),
        ({"source": "training", "output": "../escape"}, 403, "location_not_allowed", ".."),
        ({"source": "training", "output": "/etc/histosynth"}, 403, "location_not_allowed",
         "outside"),
        ({"source": "datasets/missing", "output": "out/x"}, 400, "not_found", "missing"),
        ({"source": "training", "output": "out/x", "model": "nope"}, 404, "unknown_model", "tiny"),
        ({"source": "training", "output": "out/x", "relabel": {"stroma": "fat"}}, 400,
         "unknown_classes", "fat"),
        ({"source": "training", "output": "out/x", "variants_per_mask": 0}, 422,
         "validation_error", "variants_per_mask"),
        ({"source": "training"}, 422, "validation_error", "output"),
        ({"source": "datasets/synth", "output": "."}, 403, "location_not_allowed", "data root"),
        ({"source": "datasets/synth", "output": "redis"}, 403, "location_not_allowed", "reserved"),
        ({"source": "datasets/synth", "output": "runs/x"}, 403, "location_not_allowed", "runs"),
        ({"source": "datasets/synth", "output": "x" * 5000}, 422, "validation_error", "output"),
        ({"source": "datasets/synth", "output": "a/" + "x" * 300}, 400, "invalid_location",
         "255"),
        ({"source": "training", "output": "out/x"}, 403, "location_not_allowed",
         "outside the data root"),
        ({"source": "datasets/synth", "output": "out/x", "model": "tiny\n"}, 422,
         "validation_error", "model"),
    ],
)
def test_bad_augment_requests(
    jobs_server: LiveServer, redis_conn: Any, payload: dict, status: int, code: str, needle: str
) -> None:
    with jobs_server.client() as c:
        assert_error(c.post("/jobs/augment", json=payload), status, code, needle)


def test_bad_train_request_and_unknown_job(jobs_server: LiveServer, redis_conn: Any) -> None:
    with jobs_server.client() as c:
        bad = {"dataset": "s3://elsewhere/data/", "name": "x"}
        assert_error(c.post("/jobs/train", json=bad), 403, "location_not_allowed", "elsewhere")
        bad_name = {"dataset": "datasets/synth", "name": "../x"}
        assert_error(c.post("/jobs/train", json=bad_name), 422, "validation_error", "name")
        assert_error(c.get("/jobs/nope"), 404, "unknown_job", "nope")
        assert_error(c.delete("/jobs/nope"), 404, "unknown_job")
        assert c.get("/ready").json()["checks"]["redis"]["ok"]


@pytest.mark.parametrize("job_id", ["a.b", "a b", "a*", "a%00b", "caf%C3%A9", "x" * 300])
def test_malformed_job_ids_are_a_4xx(
    jobs_server: LiveServer, redis_conn: Any, job_id: str
) -> None:
    with jobs_server.client() as c:
        for method in ("GET", "DELETE"):
            r = c.request(method, f"/jobs/{job_id}")
            assert r.status_code in (404, 422), r.text
            assert_error(r, r.status_code, "unknown_job" if r.status_code == 404 else
                         "validation_error", "job_id" if r.status_code == 422 else "unknown job")
