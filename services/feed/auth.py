"""Bearer tokens: viewers read, operators act; only the token's sha256 is stored in SQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from services.feed.errors import ApiError
from services.store import queries
from services.store.engine import writer

ROLES = ("viewer", "operator")
PREFIX = "lwt_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as the actor) and role."""

    name: str
    role: str


ANONYMOUS = Principal("anonymous", "anonymous")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def create(engine: Engine, role: str, name: str) -> str:
    """Create a token and return it (the only time it is ever shown)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    token = new_token()
    with writer(engine).begin() as conn:
        queries.create_token(conn, token, role, name)
    return token


def _presented(request: Request, *, allow_ticket: bool) -> str | None:
    """The token of the request: the Authorization header, or for reads the token behind a
    ``?ticket=`` (a token itself is never taken from a URL)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(
                401,
                "unauthorized",
                "use 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )
        return value.strip()
    ticket = request.query_params.get("ticket") if allow_ticket else None
    if ticket:  # EventSource and <img> cannot send headers
        token = request.app.state.tickets.token(ticket[:100])
        if token is None:
            raise ApiError(
                401, "unauthorized", "unknown or expired ticket", {"WWW-Authenticate": "Bearer"}
            )
        return str(token)
    return None


def _resolve(request: Request, token: str) -> Principal:
    engine: Engine = request.app.state.engine
    if len(token) > 200:
        raise ApiError(
            401, "unauthorized", "unknown or revoked token", {"WWW-Authenticate": "Bearer"}
        )
    with engine.connect() as conn:
        found = queries.lookup_token(conn, token)
    if found is None:
        raise ApiError(
            401, "unauthorized", "unknown or revoked token", {"WWW-Authenticate": "Bearer"}
        )
    return Principal(*found)


def reader(request: Request) -> Principal:
    """A viewer or operator; anonymous too when reads are open (demo profile). The token it
    presented is kept in ``request.state.token`` (None for anonymous)."""
    token = _presented(request, allow_ticket=True)
    request.state.token = token
    if token is None:
        if request.app.state.settings.reads_need_token:
            raise ApiError(
                401,
                "unauthorized",
                "this feed needs a token to read",
                {"WWW-Authenticate": "Bearer"},
            )
        return ANONYMOUS
    return _resolve(request, token)


def operator(request: Request) -> Principal:
    """An operator token in the Authorization header (every write records its name)."""
    token = _presented(request, allow_ticket=False)
    request.state.token = token
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "writes need 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )
    who = _resolve(request, token)
    if who.role != "operator":
        raise ApiError(403, "forbidden", f"role {who.role} may read but not act")
    return who


Reader = Annotated[Principal, Depends(reader)]
Operator = Annotated[Principal, Depends(operator)]
