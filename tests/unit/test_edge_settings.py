"""Edge settings: env parsing, stream lists, sensor limits, errors exit 2."""

from __future__ import annotations

import pytest

from broker.config import SettingsError, load_settings
from broker.topics import StreamRef
from edge.settings import EdgeSettings, SensorLimit

pytestmark = pytest.mark.unit


def test_env_streams_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEWATCH_STREAMS", "s/l/st/c1, s/l/st/sensor/t1")
    monkeypatch.setenv("LINEWATCH_SENSOR_LIMITS", '{"t1": {"low": 1, "high": 5}, "*": {}}')
    s = EdgeSettings()
    assert s.streams == ["s/l/st/camera/c1", "s/l/st/sensor/t1"]
    assert s.limit_for(StreamRef.sensor("s", "l", "st", "t1")) == SensorLimit(low=1, high=5)
    assert s.limit_for(StreamRef.sensor("s", "l", "st", "t2")) == SensorLimit()
    assert s.reorder_timeout_s == 2.0 and s.heartbeat_s == 1.0


def test_bad_values_print_every_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(EdgeSettings, worker_id="bad id!", streams=["a/b"], max_batch=0)
    assert err.value.code == 2
    out = capsys.readouterr().err
    assert "worker_id" in out and "streams" in out and "max_batch" in out
