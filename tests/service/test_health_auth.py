"""/health, /ready, OpenAPI and the optional API key."""

from __future__ import annotations

import httpx

from tests.service.conftest import (
    API_KEY,
    MODEL,
    LiveServer,
    assert_error,
    generate,
    mask_png,
)


def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_ready_reports_redis_down(client: httpx.Client) -> None:
    r = client.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["model"]["ok"] and MODEL in checks["model"]["detail"]
    assert checks["storage"]["ok"]
    assert not checks["redis"]["ok"]


def test_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/generate", "/segment", "/models", "/models/{name}", "/jobs/augment", "/jobs/train",
            "/jobs", "/jobs/{job_id}", "/health", "/ready"} <= set(spec["paths"])
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "swagger" in client.get("/docs").text.lower()


def test_api_key_required_when_configured(keyed_server: LiveServer) -> None:
    with keyed_server.client() as c:
        assert_error(generate(c), 401, "unauthorized", "missing", "X-API-Key")
        wrong = c.post("/generate", files={"mask": ("m.png", mask_png())},
                       headers={"X-API-Key": "wrong"})
        assert_error(wrong, 401, "unauthorized", "wrong")
        assert_error(c.get("/models"), 401, "unauthorized")
        assert_error(c.get("/jobs"), 401, "unauthorized")
        assert c.get("/health").status_code == 200
        # open by decision (README, Security): the description of the API, not its data
        spec = c.get("/openapi.json")
        assert spec.status_code == 200
        assert "APIKeyHeader" in spec.json()["components"]["securitySchemes"]
        assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 200
    with keyed_server.client(headers={"X-API-Key": API_KEY}) as c:
        assert generate(c).status_code == 200
        assert c.get("/models").status_code == 200


def test_no_key_needed_when_not_configured(client: httpx.Client) -> None:
    assert client.get("/models").status_code == 200
