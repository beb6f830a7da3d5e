"""/docs: Swagger UI from the feed itself, same-origin assets with integrity, a read like any."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.feed import auth
from services.feed.app import create_app
from services.feed.guard import CSP
from services.feed.openapi30 import downgrade
from services.feed.settings import FeedSettings
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.unit

ASSETS = {
    "/docs/assets/swagger-ui-bundle.js": "text/javascript",
    "/docs/assets/swagger-ui.css": "text/css",
    "/docs/assets/docs.js": "text/javascript",
}


def _client(tmp_path: Path, profile: str) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    upgrade(url)
    engine = make_engine(url)
    mqtt = "mqtt://u:p@h"  # the secure profile wants credentials (no bus is used here)
    settings = FeedSettings(db_url=url, profile=profile, feed_mqtt=False, mqtt_url=mqtt)
    app = create_app(settings, engine=engine, escalate=False)
    try:
        with TestClient(app, base_url="http://localhost") as client:
            yield client, auth.create(engine, "viewer", "victor")
    finally:
        engine.dispose()


@pytest.fixture()
def demo(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    yield from _client(tmp_path, "demo")


@pytest.fixture()
def secure(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    yield from _client(tmp_path, "secure")


def _sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


def test_docs_page_loads_only_its_own_assets_with_integrity(demo: tuple[TestClient, str]) -> None:
    client, _ = demo
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-security-policy"] == CSP  # the feed's CSP, unchanged
    html = page.text
    assert "http://" not in html and "https://" not in html and "//" not in html
    urls = {u.split("?v=")[0] for u in re.findall(r'(?:src|href)="([^"]*)"', html)}
    assert urls == {*ASSETS, "data:,"}  # same-origin paths only (and no favicon request)
    assert "<script>" not in html and "style=" not in html  # nothing inline: CSP allows none
    tags = re.findall(r"<(?:script\b|link rel=\"stylesheet\")[^>]*>", html)
    refs: dict[str, str] = {}
    versions: dict[str, str] = {}
    for tag in tags:
        src = re.search(r'(?:src|href)="([^"]+)"', tag)
        sri = re.search(r'integrity="([^"]+)"', tag)
        assert src and sri and 'crossorigin="anonymous"' in tag, tag
        path, _, version = src.group(1).partition("?v=")
        refs[path] = sri.group(1)
        versions[path] = version
    assert set(refs) == set(ASSETS)
    for path, media in ASSETS.items():
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].split(";")[0] == media, path
        assert r.headers["x-content-type-options"] == "nosniff"
        cache = r.headers["cache-control"]  # immutable: the URL changes with the bytes
        assert "max-age=" in cache and "immutable" in cache and r.headers["etag"], path
        assert refs[path] == _sri(r.content), path
        assert versions[path] == hashlib.sha384(r.content).hexdigest()[:16], path
        again = client.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").content
    assert client.get("/docs/assets/swagger-ui-bundle.js.map").status_code == 404
    assert client.get("/docs/assets/..%2Fapp.py").status_code == 404


def test_start_script_points_at_our_schema_and_keeps_no_token(
    demo: tuple[TestClient, str],
) -> None:
    script = demo[0].get("/docs/assets/docs.js").text
    assert '"/docs/openapi.json"' in script and "validatorUrl: null" in script
    assert "persistAuthorization: false" in script and "localStorage." not in script
    assert "http://" not in script and "https://" not in script


def test_schema_declares_the_bearer_scheme(
    demo: tuple[TestClient, str], secure: tuple[TestClient, str]
) -> None:
    open_spec = demo[0].get("/openapi.json").json()
    scheme = open_spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    ack = open_spec["paths"]["/api/alerts/{alert_id}/ack"]["post"]["security"]
    assert ack == [{"bearer": []}]  # writes always need a token
    assert open_spec["paths"]["/api/stream/ticket"]["post"]["security"] == [{"bearer": []}]
    assert open_spec["paths"]["/api/alerts"]["get"]["security"] == [{}, {"bearer": []}]
    assert "security" not in open_spec["paths"]["/healthz"]["get"]
    client, viewer = secure
    spec = client.get("/openapi.json", headers={"Authorization": f"Bearer {viewer}"}).json()
    assert spec["paths"]["/api/alerts"]["get"]["security"] == [{"bearer": []}]


def test_docs_is_a_read_in_the_secure_profile(secure: tuple[TestClient, str]) -> None:
    client, viewer = secure
    for path in ("/docs", "/openapi.json", "/docs/openapi.json"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert client.get(path, headers={"Authorization": "Bearer lwt_nope"}).status_code == 401
    ok = client.get("/docs", headers={"Authorization": f"Bearer {viewer}"})
    assert ok.status_code == 200 and "swagger-ui-bundle.js" in ok.text
    # a browser opens /docs with a short-lived read ticket (never the token) ...
    ticket = client.post(
        "/api/stream/ticket", headers={"Authorization": f"Bearer {viewer}"}
    ).json()["ticket"]
    assert client.get("/docs", params={"ticket": ticket}).status_code == 200
    assert client.get("/docs/openapi.json", params={"ticket": ticket}).status_code == 200
    # ... and the page's assets are public library code, like /static
    for path in ASSETS:
        assert client.get(path).status_code == 200, path


def test_docs_is_open_in_the_demo_profile(demo: tuple[TestClient, str]) -> None:
    client, _ = demo
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # no other CDN-backed page


def test_swagger_ui_gets_the_same_schema_as_openapi_3_0(demo: tuple[TestClient, str]) -> None:
    client, _ = demo
    full, old = client.get("/openapi.json").json(), client.get("/docs/openapi.json").json()
    assert full["openapi"].startswith("3.1") and old["openapi"] == "3.0.3"
    assert set(old["paths"]) == set(full["paths"])
    assert old["components"]["securitySchemes"] == full["components"]["securitySchemes"]
    assert '"null"' not in json.dumps(old)
    threshold = old["components"]["schemas"]["ThresholdBody"]["properties"]["defect_threshold"]
    assert threshold["nullable"] is True and threshold["exclusiveMinimum"] is True


def test_downgrade_rewrites_only_3_1_constructs() -> None:
    ref = {"$ref": "#/components/schemas/B"}
    schema: dict[str, Any] = {
        "openapi": "3.1.0",
        "components": {
            "schemas": {
                "A": {
                    "type": "object",
                    "properties": {
                        "const": {"type": "string", "const": "x"},
                        "n": {
                            "anyOf": [{"type": "number", "exclusiveMaximum": 1}, {"type": "null"}]
                        },
                        "b": {"anyOf": [ref, {"type": "null"}]},
                        "t": {"type": ["integer", "null"], "minimum": 0},
                        "u": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                }
            }
        },
    }
    props = downgrade(schema)["components"]["schemas"]["A"]["properties"]
    assert props["const"] == {"type": "string", "enum": ["x"]}  # a property named "const"
    assert props["n"] == {
        "type": "number",
        "maximum": 1,
        "exclusiveMaximum": True,
        "nullable": True,
    }
    assert props["b"] == {"allOf": [ref], "nullable": True}
    assert props["t"] == {"type": "integer", "minimum": 0, "nullable": True}
    assert props["u"] == schema["components"]["schemas"]["A"]["properties"]["u"]
    assert schema["openapi"] == "3.1.0"  # the input is left as it was
