"""The benchmarks' private broker config: the project's settings, its own port and folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _broker import CONF, conf_for

pytestmark = pytest.mark.unit


def test_private_conf_keeps_the_project_settings_on_its_own_port(tmp_path: Path) -> None:
    text = conf_for(18999, tmp_path)
    lines = text.splitlines()
    assert lines[0].startswith("user ")
    assert "listener 18999 127.0.0.1" in lines and "listener 1883 127.0.0.1" not in lines
    assert f"persistence_location {tmp_path}/" in lines
    for setting in ("set_tcp_nodelay true", "max_queued_messages 100000"):
        assert setting in lines and setting in CONF.read_text().splitlines()


def test_a_config_without_a_listener_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no listener"):
        conf_for(18999, tmp_path, "allow_anonymous true\n")
