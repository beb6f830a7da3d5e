"""Typed settings shared by every process: LINEWATCH_* env vars plus an optional TOML file."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError, field_validator
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


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


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


S = TypeVar("S", bound=CommonSettings)


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
