"""The studio page and its files as the server ships them (no browser needed)."""

from __future__ import annotations

import re

import httpx

from service.routes.studio import STATIC_DIR
from tests.service.conftest import LiveServer


def test_page_is_served_at_root_without_a_key(keyed_server: LiveServer) -> None:
    with keyed_server.client() as c:
        r = c.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "<title>HistoSynth Studio</title>" in r.text
        assert "test-secret" not in r.text
        assert c.get("/static/js/main.js").status_code == 200
        assert c.get("/models").status_code == 401  # the API itself still needs the key
        assert c.post("/masks/convert").status_code == 401
        assert c.get("/jobs/x/pairs").status_code == 401


def test_every_file_the_page_loads_is_served(client: httpx.Client) -> None:
    page = client.get("/").text
    refs = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert {"/static/studio.css", "/static/js/main.js"} <= set(refs)
    modules = [p.relative_to(STATIC_DIR).as_posix() for p in (STATIC_DIR / "js").glob("*.js")]
    for path in refs + [f"/static/{m}" for m in modules]:
        r = client.get(path)
        assert r.status_code == 200, path
    for module in modules:  # every relative import of a module exists
        text = (STATIC_DIR / module).read_text()
        for target in re.findall(r'from "\./([^"]+)"', text):
            assert (STATIC_DIR / "js" / target).is_file(), (module, target)


def test_the_page_and_the_api_are_both_in_the_openapi_description(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/" not in spec["paths"]  # the page is not an API route
    assert {"/masks/convert", "/jobs/{job_id}/pairs", "/jobs/{job_id}/pairs/{index}/image",
            "/jobs/{job_id}/pairs/{index}/mask"} <= set(spec["paths"])
    assert "Studio" in spec["info"]["description"]


def test_models_list_reports_the_limits(client: httpx.Client, server: LiveServer) -> None:
    limits = client.get("/models").json()["limits"]
    s = server.settings
    assert limits == {"max_variants": s.max_variants, "max_pixels": s.max_pixels,
                      "max_generate_pixels": s.max_generate_pixels,
                      "min_mask_side": s.min_mask_side, "max_upload_bytes": s.max_upload_bytes}
