"""Typed settings of the operator feed (``LINEWATCH_FEED_*``)."""

from __future__ import annotations

from pydantic import Field

from broker.config import CommonSettings


class FeedSettings(CommonSettings):
    """What `linewatch feed` reads, on top of the common settings."""

    feed_host: str = "127.0.0.1"
    feed_port: int = Field(default=8080, ge=0, le=65535)
    feed_name: str = Field(default="main", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    # reads need a token too? None: yes in the secure profile, no in the demo profile
    feed_read_auth: bool | None = None
    feed_poll_ms: float = Field(default=50.0, gt=0, le=100.0)  # SSE tail of alert_events
    feed_ping_s: float = Field(default=15.0, gt=0, le=300)  # SSE keep-alive comment
    feed_escalate_after_s: float = Field(default=300.0, ge=0)
    feed_escalate_interval_s: float = Field(default=5.0, gt=0, le=3600)
    feed_lines_window_s: float = Field(default=300.0, ge=10, le=86_400)
    feed_publish_timeout_s: float = Field(default=5.0, gt=0, le=60)
    feed_mqtt: bool = True  # False: no bus (threshold and curation requests answer 503)
    # Host headers served (DNS rebinding): "*" = any. Default: loopback names and feed_host.
    feed_allowed_hosts: list[str] = Field(default_factory=list)
    feed_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    feed_sse_max: int = Field(default=200, ge=1, le=100_000)  # open /api/stream in all
    feed_sse_max_per_token: int = Field(default=8, ge=1, le=10_000)  # per token or address
    feed_ticket_ttl_s: float = Field(default=300.0, ge=5, le=3600)

    @property
    def uses_mqtt(self) -> bool:
        return self.feed_mqtt

    @property
    def hosts(self) -> list[str]:
        """The Host allow-list in effect."""
        if self.feed_allowed_hosts:
            return self.feed_allowed_hosts
        names = ["localhost", "127.0.0.1", "::1"]
        if self.feed_host not in ("0.0.0.0", "::", ""):
            names.append(self.feed_host)
        return names

    @property
    def reads_need_token(self) -> bool:
        if self.feed_read_auth is not None:
            return self.feed_read_auth
        return self.profile == "secure"
