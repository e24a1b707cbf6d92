"""Jobs end to end: real valkey server, real RQ worker processes, moto_server as S3."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from redis import Redis
from rq.job import Job

from model.errors import UnknownNameError
from tests.conftest import synthetic_tile
from tests.services import S3Service, WorkerFactory
from worker.augment import pair_seed
from worker.embedded import worker_command
from worker.jobs import JobContext
from worker.models import ModelStore
from worker.queue import cancel_job, enqueue_augment, enqueue_train, get_job, list_jobs
from worker.schemas import AugmentJobRequest, JobInfo, TrainJobRequest
from worker.settings import Settings
from worker.storage import StorageError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def settings(tmp_path: Path, s3: S3Service, redis_url: str) -> Settings:
    """Settings shared by the test process and its workers (passed as environment)."""
    (tmp_path / "bundled").mkdir()
    return Settings(
        _env_file=None, redis_url=redis_url, s3_endpoint_url=s3.endpoint_url,
        s3_access_key_id="testing", s3_secret_access_key="testing", allowed_buckets=[s3.bucket],
        data_root=tmp_path / "data", model_store=str(tmp_path / "store"),
        bundled_models=tmp_path / "bundled", default_model="tiny", device="cpu",
        job_lease_seconds=3, job_retries=2,
    )


@pytest.fixture
def tiny_store(settings: Settings, tiny_model_path: Path) -> ModelStore:
    store = ModelStore(settings)
    store.publish(tiny_model_path, "tiny")
    return store


def put_masks(s3: S3Service, prefix: str, count: int, size: int) -> None:
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(synthetic_tile(10 + i, size)[1], mode="L").save(buf, format="PNG")
        s3.client.put_object(Bucket=s3.bucket, Key=f"{prefix}/masks/m{i}.png", Body=buf.getvalue())


def keys(s3: S3Service, prefix: str) -> list[str]:
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1:] for p in pages for o in p.get("Contents", []))


def wait_for(conn: Redis, job_id: str, done: Callable[[JobInfo], bool], timeout_s: float = 60) -> JobInfo:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = get_job(conn, job_id)
        if done(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s} s: {get_job(conn, job_id)}")


def finished(info: JobInfo) -> bool:
    assert info.status != "failed", info.error
    return info.status == "finished"


def check_pairs(s3: S3Service, out: str, n: int, seed: int, sha256: str) -> list[dict]:
    """Exactly n pairs: n images, n masks, n records and n manifest lines, none twice."""
    found = keys(s3, out)
    for folder in ("images/", "masks/", "records/"):
        assert len([k for k in found if k.startswith(folder)]) == n, (folder, found)
    body = s3.client.get_object(Bucket=s3.bucket, Key=f"{out}/manifest.jsonl")["Body"].read()
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["index"] for r in lines] == list(range(n))
    assert len({r["image"] for r in lines}) == n and {r["image"] for r in lines} <= set(found)
    assert [r["seed"] for r in lines] == [pair_seed(seed, i) for i in range(n)]
    assert {(r["model"], r["sha256"], r["noise"]) for r in lines} == {("tiny", sha256, 0.5)}
    return lines


def test_augment_job_writes_pairs_and_manifest_to_s3(
    redis_conn: Redis, rq_worker: WorkerFactory, s3: S3Service, settings: Settings, tiny_store: ModelStore
) -> None:
    put_masks(s3, "aug1/src", count=2, size=64)
    req = AugmentJobRequest(source=f"s3://{s3.bucket}/aug1/src/", output=f"s3://{s3.bucket}/aug1/out/",
                            model="tiny", variants_per_mask=2, seed=7, noise=0.5,
                            relabel={"benign": "tumour"})
    worker = rq_worker(env=settings.to_env())
    info = enqueue_augment(redis_conn, req, settings)
    assert info.status == "queued" and info.kind == "augment"
    info = wait_for(redis_conn, info.id, finished)
    assert info.result and info.result["pairs"] == 4 and info.result["written"] == 4
    assert info.progress["done"] == info.progress["total"] == 4
    lines = check_pairs(s3, "aug1/out", 4, seed=7, sha256=tiny_store.get("tiny").sha256)
    mask = s3.client.get_object(Bucket=s3.bucket, Key=f"aug1/out/{lines[0]['mask']}")["Body"].read()
    assert set(np.unique(np.array(Image.open(io.BytesIO(mask))))) <= {0, 2}  # benign relabelled
    assert [j.id for j in list_jobs(redis_conn)] == [info.id]
    check = subprocess.run([*worker_command(["augment"]), "--check"], env=worker.env, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "1 worker(s)" in check.stdout, check.stderr


def test_killed_worker_job_is_retried_with_exactly_n_pairs(
    redis_conn: Redis, rq_worker: WorkerFactory, s3: S3Service, settings: Settings, tiny_store: ModelStore
) -> None:
    put_masks(s3, "aug2/src", count=2, size=128)
    n = 32
    req = AugmentJobRequest(source=f"s3://{s3.bucket}/aug2/src/", output=f"s3://{s3.bucket}/aug2/out/",
                            model="tiny", variants_per_mask=16, seed=11, noise=0.5)
    first = rq_worker(env=settings.to_env())
    info = enqueue_augment(redis_conn, req, settings)
    wait_for(redis_conn, info.id, lambda i: i.progress.get("written", 0) >= 1)
    first.kill()  # worker and work horse: SIGKILL, as when a machine dies
    complete = len([k for k in keys(s3, "aug2/out") if k.startswith("records/")])
    assert 1 <= complete < n, "the job should have been killed half way"
    assert get_job(redis_conn, info.id).status == "started"

    rq_worker(env=settings.to_env())  # its recovery retries the job once the lease lapses
    info = wait_for(redis_conn, info.id, finished)
    assert info.result is not None and info.retries_left == 1
    assert info.result["skipped"] == complete and info.result["written"] == n - complete
    check_pairs(s3, "aug2/out", n, seed=11, sha256=tiny_store.get("tiny").sha256)


def test_train_job_publishes_a_model(
    redis_conn: Redis, rq_worker: WorkerFactory, s3: S3Service, settings: Settings,
    synthetic_dataset_dir: Path,
) -> None:
    for path in synthetic_dataset_dir.rglob("*"):
        if path.is_file():
            key = f"train1/dataset/{path.relative_to(synthetic_dataset_dir).as_posix()}"
            s3.client.upload_file(str(path), s3.bucket, key)
    req = TrainJobRequest(dataset=f"s3://{s3.bucket}/train1/dataset/", name="trained-tiny",
                          preset="tiny", mode="joint", steps_per_scale=2)
    rq_worker(env=settings.to_env(), queues=("train",), cli="histosynth")
    info = wait_for(redis_conn, enqueue_train(redis_conn, req, settings).id, finished, timeout_s=90)
    model = ModelStore(settings).get("trained-tiny")
    assert info.result and info.result["sha256"] == model.sha256 and not info.result["resumed"]
    assert model.metadata["dataset_uri"] == req.dataset
    assert info.progress["phase"] == "done"


def test_canceled_queued_job_never_runs_and_bad_jobs_fail_once(
    redis_conn: Redis, rq_worker: WorkerFactory, settings: Settings, tiny_store: ModelStore,
    synthetic_dataset_dir: Path,
) -> None:
    shutil.copytree(synthetic_dataset_dir, settings.data_root / "ds")
    canceled = enqueue_augment(redis_conn, AugmentJobRequest(source="ds", output="out-canceled"), settings)
    kept = enqueue_augment(redis_conn, AugmentJobRequest(source="ds", output="out-kept"), settings)
    bad = enqueue_augment(redis_conn, AugmentJobRequest(source="ds", output="o", model="nope"), settings)
    assert cancel_job(redis_conn, canceled.id, settings).status == "canceled"
    worker = rq_worker(env=settings.to_env(), queues=("augment",), burst=True, cli="rq")
    assert worker.process.wait(90) == 0, worker.log()
    assert get_job(redis_conn, kept.id).status == "finished"
    assert (settings.data_root / "out-kept" / "manifest.jsonl").is_file()
    after = get_job(redis_conn, canceled.id)
    assert after.status == "canceled" and after.started_at is None and after.result is None
    assert not (settings.data_root / "out-canceled").exists()
    failed = get_job(redis_conn, bad.id)  # a user error fails at once: no retries
    assert failed.status == "failed" and failed.retries_left == 0
    assert failed.error and "UnknownNameError: unknown model 'nope'" in failed.error


def test_cancel_running_training_checkpoints_and_stops(
    redis_conn: Redis, rq_worker: WorkerFactory, settings: Settings, synthetic_dataset_dir: Path,
) -> None:
    shutil.copytree(synthetic_dataset_dir, settings.data_root / "ds")
    req = TrainJobRequest(dataset="ds", name="never-published", preset="tiny", steps_per_scale=5000)
    rq_worker(env=settings.to_env(), queues=("train",))
    info = enqueue_train(redis_conn, req, settings)
    wait_for(redis_conn, info.id, lambda i: i.progress.get("done_steps", 0) >= 2)
    assert cancel_job(redis_conn, info.id, settings).cancel_requested
    info = wait_for(redis_conn, info.id, lambda i: i.status == "canceled", timeout_s=30)
    assert info.result and info.result["canceled"] and info.progress["phase"] == "canceled"
    assert (Path(info.result["run_dir"]) / "state.pt").is_file()
    with pytest.raises(KeyError):
        ModelStore(settings).get("never-published")



@pytest.mark.parametrize(
    ("error", "retried"),
    [(KeyError("a_dict_key"), True), (RuntimeError("a bug"), True), (StorageError("S3 down"), True),
     (UnknownNameError("unknown model 'x'"), False), (ValueError("bad dataset"), False),
     (FileNotFoundError("no masks/"), False)],
)
def test_user_errors_fail_without_retries_bugs_keep_them(
    redis_conn: Redis, settings: Settings, error: Exception, retried: bool
) -> None:
    """A real RQ job with 2 retries left; the job body raises ``error``."""
    info = enqueue_augment(redis_conn, AugmentJobRequest(source="ds", output="o"), settings)
    job = Job.fetch(info.id, connection=redis_conn)
    assert job.retries_left == 2
    with pytest.raises(type(error)), JobContext(job, settings).running():
        raise error
    assert job.retries_left == (2 if retried else 0)
