"""Typed settings shared by every process: LINEWATCH_* env vars plus an optional TOML file."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

EMBEDDED_PORT = 1884  # not 1883, so the zero-setup default never fights a system Mosquitto
DEFAULT_MQTT_URL = f"mqtt://127.0.0.1:{EMBEDDED_PORT}"
CONFIG_ENV = "LINEWATCH_CONFIG"


@dataclass(frozen=True)
class MqttUrl:
    """``mqtt://user:pass@host:port`` (``mqtts://`` for TLS), parsed."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://[user:pass@]host[:port] or mqtts://…")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        user = unquote(parts.username) if parts.username else None
        pw = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, tls, user, pw)


# Query parameters that carry secrets in database/broker URLs (libpq: password, sslpassword).
_SECRET_PARAM = re.compile(r"pass|secret|token|pwd|credential", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")


def _url_secrets(url: str) -> list[str]:
    """The secret strings in ``url`` (user-info password, secret query values), as written
    and percent-decoded, longest first."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if _is_secret(k)]
        found += [m.group(3) for m in _QUERY_PAIR.finditer(url) if _is_secret(m.group(2))]
    except ValueError:
        return []
    both = {x for f in found if f for x in (f, unquote(f))}
    return sorted(both, key=len, reverse=True)


def _is_secret(name: str) -> bool:
    return bool(_SECRET_PARAM.search(unquote(name)))


def redact_url(url: str) -> str:
    """The URL with any password, in the user info or as a query parameter (``?password=``,
    ``sslpassword=``, …), replaced by ``***``: safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
        url = parts._replace(netloc=netloc).geturl()
    return _QUERY_PAIR.sub(
        lambda m: f"{m.group(1)}{m.group(2)}=***" if _is_secret(m.group(2)) else m.group(0), url
    )


def redact_text(text: str, *urls: str) -> str:
    """``text`` (an error message, say) with every secret of ``urls`` replaced by ``***``,
    whatever form the URL took in it (a driver may quote or re-render it)."""
    for url in urls:
        for secret in _url_secrets(url):
            text = text.replace(secret, "***")
    return text


class CommonSettings(BaseSettings):
    """What every LineWatch process reads. Subclass per process; add a distinct env prefix
    only for process-specific fields (they still live under LINEWATCH_*)."""

    model_config = SettingsConfigDict(
        env_prefix="LINEWATCH_", extra="ignore", validate_default=True
    )

    mqtt_url: str = DEFAULT_MQTT_URL
    mqtt_ca_file: Path | None = None
    keepalive_s: int = Field(default=5, ge=1, le=600)
    db_url: str = "sqlite:///var/linewatch.db"
    data_dir: Path = Path("var")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    profile: str = Field(default="demo", pattern=r"^(demo|secure)$")

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, v: str) -> str:
        MqttUrl.parse(v)
        return v

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, v: str) -> str:
        if "://" not in v or not v.split("://", 1)[0]:
            raise ValueError(
                "must be an SQLAlchemy URL, e.g. sqlite:///var/linewatch.db "
                "or postgresql+psycopg://user@host/db"
            )
        return v

    @model_validator(mode="after")
    def _secure_profile(self) -> CommonSettings:
        if self.profile == "secure" and self.uses_mqtt:
            url = MqttUrl.parse(self.mqtt_url)
            if not url.username or not url.password:
                raise ValueError(
                    "the secure profile needs a user name and password in LINEWATCH_MQTT_URL "
                    "(mqtt://USER:PASSWORD@host:1883 or mqtts://…; see broker/secure/): "
                    "anonymous or credential-less broker connections are refused"
                )
        return self

    @property
    def uses_mqtt(self) -> bool:
        """Whether this process connects to the broker (the secure profile then demands
        credentials); a process that can run without the bus overrides it."""
        return True

    @property
    def mqtt(self) -> MqttUrl:
        return MqttUrl.parse(self.mqtt_url)

    def summary(self) -> dict[str, str]:
        """Settings safe to print (passwords redacted)."""
        return {"mqtt_url": redact_url(self.mqtt_url), "db_url": redact_url(self.db_url)}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = os.environ.get(CONFIG_ENV)
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml)))
        return tuple(sources)


class ProfileSettings(BaseSettings):
    """Only the profile (for processes that have no other settings, like the embedded
    broker): LINEWATCH_PROFILE or the TOML file."""

    model_config = SettingsConfigDict(env_prefix="LINEWATCH_", extra="ignore")
    profile: str = Field(default="demo", pattern=r"^(demo|secure)$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return CommonSettings.settings_customise_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )


S = TypeVar("S", bound=BaseSettings)


class SettingsError(SystemExit):
    """Invalid settings: every error was printed; exit status 2."""


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from env/TOML/overrides; on any error print them all and exit 2."""
    toml = os.environ.get(CONFIG_ENV)
    if toml and not Path(toml).is_file():
        print(f"linewatch: {CONFIG_ENV}={toml}: no such file", file=sys.stderr)
        raise SettingsError(2)
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print(f"linewatch: invalid settings ({exc.error_count()} errors):", file=sys.stderr)
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(settings)"
            env = f"LINEWATCH_{where.upper()}" if where != "(settings)" else ""
            print(f"  {where} [{env}]: {err['msg']}", file=sys.stderr)
        raise SettingsError(2) from None
