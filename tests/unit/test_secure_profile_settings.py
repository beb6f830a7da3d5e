"""Findings 6 and 13: no anonymous broker in the secure profile; no secret printed from a URL."""

# Every component refuses a credential-less broker URL there, the embedded broker refuses to
# run there, and no secret in any URL form is printed.

# Each attack runs the real ``linewatch`` command line (a subprocess, bounded by a timeout).

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from broker.config import CommonSettings, redact_text, redact_url
from services.dispatcher.settings import DispatchSettings
from services.feed.settings import FeedSettings
from services.store.settings import StoreSettings

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def linewatch(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")}
    full.update({"PYTHONPATH": str(REPO), **env})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://127.0.0.1:1884",  # the embedded default: anonymous
        "mqtt://edge-1@127.0.0.1:1883",  # a user without a password
        "mqtts://broker.example:8883",
    ],
)
@pytest.mark.parametrize("cls", [CommonSettings, StoreSettings, DispatchSettings, FeedSettings])
def test_secure_settings_refuse_credential_less_urls(cls: type[CommonSettings], url: str) -> None:
    with pytest.raises(ValueError, match="secure profile needs a user name and password"):
        cls(profile="secure", mqtt_url=url)
    assert cls(profile="demo", mqtt_url=url).mqtt_url == url  # the demo profile is open
    ok = cls(profile="secure", mqtt_url="mqtt://edge-1:pw@127.0.0.1:1883")
    assert ok.mqtt.username == "edge-1"


def test_a_feed_without_the_bus_needs_no_broker_credentials() -> None:
    assert not FeedSettings(profile="secure", feed_mqtt=False).uses_mqtt


@pytest.mark.parametrize(
    "cmd",
    [
        ["store"],
        ["dispatch"],
        ["edge", "--id", "edge-1", "--streams", "A/l1/s1/c1"],
        ["feed"],
        ["up"],
    ],
)
def test_every_component_refuses_to_start_anonymous_in_the_secure_profile(
    cmd: list[str], tmp_path: Path
) -> None:
    """The attack: LINEWATCH_PROFILE=secure with no broker URL (the embedded default)."""
    env = {"LINEWATCH_PROFILE": "secure", "LINEWATCH_DATA_DIR": str(tmp_path)}
    env["LINEWATCH_DB_URL"] = f"sqlite:///{tmp_path / 'x.db'}"  # and no LINEWATCH_MQTT_URL
    done = linewatch(*cmd, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "secure profile needs a user name and password" in done.stderr


def test_the_embedded_broker_refuses_the_secure_profile() -> None:
    done = linewatch("broker", "--port", "1", env={"LINEWATCH_PROFILE": "secure"})
    assert done.returncode == 2 and "refused in the secure profile" in done.stderr


SECRETS = ("s3cretQ", "s3cretS", "p@ss:w/rd%", "s3cretP")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/db?password=s3cretQ",
        "postgresql://postgres@127.0.0.1:1/db?sslpassword=s3cretS&password=s3cretQ",
        "postgresql://postgres:p%40ss%3Aw%2Frd%25@127.0.0.1:1/db",
        "postgresql://postgres:s3cretP@127.0.0.1:1/db?application_name=x",
    ],
)
def test_no_secret_of_a_database_url_is_printed(url: str) -> None:
    """The attack of finding 13: a password in any URL form, and a connection that fails."""
    shown = redact_url(url)
    assert "***" in shown and not any(s in shown for s in SECRETS), shown
    done = linewatch("db", "upgrade", env={"LINEWATCH_DB_URL": url}, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "***" in out, out
    assert not any(s in out for s in SECRETS), out
    text = redact_text(f"failed: {url} ({unquote(url)})", url)  # as written and decoded
    assert not any(s in text for s in SECRETS), text


def test_redaction_keeps_what_is_not_secret() -> None:
    assert redact_url("mqtt://h:1883") == "mqtt://h:1883"
    assert redact_url("mqtt://u:pw@h:1883") == "mqtt://u:***@h:1883"
    assert redact_url("sqlite:///var/x.db?mode=ro") == "sqlite:///var/x.db?mode=ro"
