"""Swagger UI at /docs from the vendored swagger-ui-bundle: same-origin assets with SRI."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from swagger_ui_bundle import swagger_ui_path

from services.feed.auth import operator, reader
from services.feed.errors import ApiError
from services.feed.guard import WRITES
from services.feed.openapi30 import downgrade
from services.feed.page import HERE

ASSET_PREFIX = "/docs/assets/"
SCHEME = "bearer"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    """One file served under ``/docs/assets/``: its bytes, type and sha384 (for SRI; its hex
    names the version in the URL, so a browser never holds a stale copy under a new hash)."""

    name: str
    body: bytes
    media_type: str
    digest: bytes

    @property
    def integrity(self) -> str:
        return "sha384-" + base64.b64encode(self.digest).decode()

    @property
    def url(self) -> str:
        return f"{ASSET_PREFIX}{self.name}?v={self.digest.hex()[:16]}"

    @property
    def etag(self) -> str:
        return f'"{self.digest.hex()[:32]}"'


def load_asset(path: Path) -> Asset:
    body = path.read_bytes()
    return Asset(path.name, body, _TYPES[path.suffix], hashlib.sha384(body).digest())


@functools.cache
def load_assets() -> dict[str, Asset]:
    """Swagger UI's script and style as the package ships them, and our own start script
    (the CSP allows no inline script); read and hashed once per process."""
    vendored = Path(str(swagger_ui_path))
    paths = [vendored / "swagger-ui-bundle.js", vendored / "swagger-ui.css"]
    paths.append(HERE / "static" / "docs.js")
    return {p.name: load_asset(p) for p in paths}


def render_page(assets: dict[str, Asset]) -> str:
    template = Template((HERE / "templates" / "docs.html").read_text(encoding="utf-8"))
    css, bundle, init = (assets[n] for n in ("swagger-ui.css", "swagger-ui-bundle.js", "docs.js"))
    return template.substitute(
        css_url=css.url,
        css_sri=css.integrity,
        bundle_url=bundle.url,
        bundle_sri=bundle.integrity,
        init_url=init.url,
        init_sri=init.integrity,
    )


def install(app: FastAPI, reads_need_token: bool) -> None:
    """Routes ``/docs`` (a read: a token or ticket where reads need one) and its assets
    (public library code, like ``/static``), and the bearer scheme in the OpenAPI schema."""
    assets = load_assets()
    page = render_page(assets)

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(reader)])
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/docs/openapi.json", include_in_schema=False, dependencies=[Depends(reader)])
    def openapi30() -> JSONResponse:
        """The schema of /openapi.json as 3.0.3: the vendored Swagger UI (4.x) renders no 3.1."""
        return JSONResponse(downgrade(app.openapi()))

    @app.get(ASSET_PREFIX + "{name}", include_in_schema=False)
    def asset(name: str, request: Request) -> Response:
        found = assets.get(name)
        if found is None:
            raise ApiError(404, "not_found", "no such asset")
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": found.etag}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    _declare_bearer(app, reads_need_token)


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute; FastAPI >= 0.16x keeps an included router as one entry (its
    ``original_router``; ours are included without a prefix), older ones flatten them."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:
            yield from _api_routes(route.original_router.routes)


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _declare_bearer(app: FastAPI, reads_need_token: bool) -> None:
    """The schema declares the bearer scheme, so Swagger UI's Authorize dialog sends it:
    required on writes, and on reads where reads need a token; optional on open reads."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "a LineWatch token (`linewatch feed token create`): "
            "viewers read, operators act",
        }
        required: list[dict[str, list[str]]] = [{SCHEME: []}]
        read = required if reads_need_token else [{}, {SCHEME: []}]
        for route in _api_routes(app.routes):
            if not route.include_in_schema:
                continue
            calls = _calls(route.dependant)
            for method in route.methods or ():
                op = schema["paths"].get(route.path_format, {}).get(method.lower())
                write = method in WRITES and route.path_format.startswith("/api/")  # Guard
                if op is not None and (operator in calls or write):
                    op["security"] = required
                elif op is not None and reader in calls:
                    op["security"] = read
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
