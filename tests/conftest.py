"""Shared fixtures: real Mosquitto, Postgres and Chromium (fail, not skip, when required)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

REQUIRE = os.environ.get("LINEWATCH_REQUIRE_SERVICES") == "1"
MQTT_URL = os.environ.get("LINEWATCH_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
PG_URL = os.environ.get(
    "LINEWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pytest_configure(config: pytest.Config) -> None:
    # registered here, not in pyproject.toml, so adding it leaves the venv stamp alone
    config.addinivalue_line(
        "markers", "live: a real model and a live line of a minute or more (make test-live)"
    )


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def _missing(msg: str) -> None:
    """Skip, or fail when the run requires every service (`.ci/run`)."""
    if REQUIRE:
        pytest.fail(f"{msg} and LINEWATCH_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(msg)


def _need(url: str, port: int, what: str) -> None:
    if not _reachable(url, port):
        _missing(f"{what} not reachable at {url}")


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The Chromium to drive: ``LINEWATCH_TEST_CHROMIUM``, else the first one on PATH."""
    given = os.environ.get("LINEWATCH_TEST_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def mosquitto_url() -> str:
    """URL of the real Mosquitto the integration tier runs against."""
    _need(MQTT_URL, 1883, "Mosquitto")
    return MQTT_URL


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium for the browser tests (with Playwright importable)."""
    path = find_chromium()
    if path is None:
        where = os.environ.get("LINEWATCH_TEST_CHROMIUM") or "PATH: " + ", ".join(CHROMIUM_NAMES)
        _missing(f"no Chromium found ({where}); .ci/run installs it (tests/e2e/NEEDS_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[dev]')")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of a Postgres database where the tests may CREATE DATABASE / ROLE."""
    _need(PG_URL, 5432, "PostgreSQL")
    return PG_URL


@pytest.fixture()
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"lwtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = postgres_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture()
def site_id() -> str:
    """A unique site id, so tests sharing one broker never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}"
