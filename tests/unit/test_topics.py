"""Topic map: every builder parses back to its route and stream; bad ids and topics are refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import topics as t
from broker.topics import Kind, Route, StreamRef, TopicError
from broker.transport import topic_matches

pytestmark = pytest.mark.unit

CAM = StreamRef.camera("plant-1", "line_2", "st3", "cam-A")
SEN = StreamRef.sensor("plant-1", "line_2", "st3", "temp_1")

STREAM_BUILDERS = [
    (t.frame_topic, CAM, Route.FRAME, t.ALL_FRAMES),
    (t.sensor_topic, SEN, Route.SENSOR, t.ALL_SENSORS),
    (t.verdict_topic, CAM, Route.VERDICT, t.ALL_VERDICTS),
    (t.features_topic, CAM, Route.FEATURES, t.ALL_FEATURES),
    (t.gap_topic, CAM, Route.GAP, t.ALL_GAPS),
    (t.gap_topic, SEN, Route.GAP, t.ALL_GAPS),
    (t.readings_topic, SEN, Route.READINGS, t.ALL_READINGS),
    (t.sensor_anomaly_topic, SEN, Route.SENSOR_ANOMALY, t.ALL_SENSOR_ANOMALIES),
    (t.frame_family_topic, CAM, Route.FRAME_FAMILY, t.ALL_FRAME_FAMILIES),
    (t.threshold_change_topic, CAM, Route.THRESHOLD_CHANGE, t.ALL_THRESHOLD_CHANGES),
    (t.threshold_control_topic, CAM, Route.THRESHOLD_CONTROL, t.ALL_THRESHOLD_CONTROL),
]
ALL_PATTERNS = [
    t.ALL_FRAMES,
    t.ALL_SENSORS,
    t.ALL_VERDICTS,
    t.ALL_FEATURES,
    t.ALL_FRAME_FAMILIES,
    t.ALL_THRESHOLD_CHANGES,
    t.ALL_GAPS,
    t.ALL_READINGS,
    t.ALL_SENSOR_ANOMALIES,
    t.ALL_ALERTS,
    t.ALL_STATUS,
    t.ALL_ASSIGNMENTS,
    t.ALL_FAMILIES,
    t.ALL_THRESHOLD_CONTROL,
    t.ALL_DEAD_LETTERS,
    t.DISPATCH_DECISIONS,
]


@pytest.mark.parametrize(
    ("build", "stream", "route", "pattern"),
    STREAM_BUILDERS,
    ids=lambda x: getattr(x, "__name__", None) or str(x),
)
def test_stream_topics_round_trip(
    build: Callable[[StreamRef], str], stream: StreamRef, route: Route, pattern: str
) -> None:
    topic = build(stream)
    parsed = t.parse(topic)
    assert parsed.route is route and parsed.stream == stream
    # exactly one subscription pattern of the map matches each topic
    assert [p for p in ALL_PATTERNS if topic_matches(p, topic)] == [pattern]


@pytest.mark.parametrize(
    ("build", "route", "pattern"),
    [
        (t.worker_status_topic, Route.STATUS, t.ALL_STATUS),
        (t.assignment_topic, Route.ASSIGNMENT, t.ALL_ASSIGNMENTS),
        (t.family_topic, Route.FAMILY, t.ALL_FAMILIES),
        (t.dead_letter_topic, Route.DEAD_LETTER, t.ALL_DEAD_LETTERS),
    ],
)
def test_system_topics_round_trip(build: Callable[[str], str], route: Route, pattern: str) -> None:
    topic = build("edge-7")
    assert topic.startswith(f"{t.ROOT}/{t.SYS}/")
    parsed = t.parse(topic)
    assert (parsed.route, parsed.ident, parsed.stream) == (route, "edge-7", None)
    assert [p for p in ALL_PATTERNS if topic_matches(p, topic)] == [pattern]


def test_alert_and_dispatch_topics() -> None:
    alert = t.alert_topic("plant-1", "line_2", "st3")
    assert t.parse(alert).station == ("plant-1", "line_2", "st3")
    assert t.parse(alert).route is Route.ALERT
    assert t.parse(t.dispatch_decision_topic()).route is Route.DISPATCH_DECISION
    assert topic_matches(t.DISPATCH_DECISIONS, t.dispatch_decision_topic())


def test_stream_keys_round_trip() -> None:
    assert StreamRef.parse_key(CAM.key) == CAM
    assert StreamRef.parse_key(SEN.key) == SEN
    assert StreamRef.parse_key("plant-1/line_2/st3/cam-A") == CAM  # short camera form
    assert CAM.station_key == "plant-1/line_2/st3"
    for bad in ("a/b/c", "a/b/c/lidar/x", "a/b/c/camera/x/y", ""):
        with pytest.raises(TopicError) as err:
            StreamRef.parse_key(bad)
        assert err.value.reason in ("bad_stream", "bad_id")


BAD_IDS = ["", "+", "#", "a/b", "..", "a+b", "a#", "x\x00y", "ä", "a b", "a.b", "x" * 65, "\n"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_ids_rejected_everywhere(bad: str) -> None:
    with pytest.raises(TopicError) as err:
        t.check_id(bad)
    assert err.value.reason == "bad_id"
    for position in range(4):
        parts = ["s", "l", "st", "n"]
        parts[position] = bad
        with pytest.raises(TopicError):
            StreamRef(parts[0], parts[1], parts[2], Kind.CAMERA, parts[3])
    for build in (t.worker_status_topic, t.assignment_topic, t.family_topic, t.dead_letter_topic):
        with pytest.raises(TopicError):
            build(bad)
    with pytest.raises(TopicError):
        t.alert_topic("s", bad, "st")


def test_id_limits() -> None:
    assert t.check_id("x" * 64) == "x" * 64
    assert t.check_id("A-z_0") == "A-z_0"


def test_reserved_sys_site() -> None:
    with pytest.raises(TopicError, match="reserved"):
        StreamRef.camera(t.SYS, "l", "s", "c")
    with pytest.raises(TopicError):
        t.parse(f"{t.ROOT}/{t.SYS}/l/s/camera/c/frame")  # a system topic, not a frame


@pytest.mark.parametrize(
    "topic",
    [
        "lw/v2/a/b/c/camera/d/frame",  # other version
        "lw/v1/a/b/c/camera/d",  # camera without suffix
        "lw/v1/a/b/c/camera/d/jpeg",  # unknown suffix
        "lw/v1/a/b/c/sensor/d/verdict",  # camera-only suffix on a sensor
        "lw/v1/a/b/c/lidar/d/frame",  # unknown kind
        "lw/v1/a/b/c/camera/d/frame/extra",  # too deep
        "lw/v1/a/b/c/camera/+/frame",  # a wildcard is not a topic
        "lw/v1/a/b/c/camera/../frame",
        "lw/v1/a/b/c/camera/d\x00/frame",
        "lw/v1/_sys/status",
        "lw/v1/_sys/status/a/b",
        "lw/v1/_sys/unknown/a",
        "lw/v1/_sys/control/threshold/a/b/c",
        "lw/v1/a/b/alert",
        "/lw/v1/a/b/c/alert",
        "lw/v1/" + "x/" * 300 + "alert",
        "",
    ],
)
def test_parse_rejects(topic: str) -> None:
    with pytest.raises(TopicError) as err:
        t.parse(topic)
    assert err.value.reason in ("bad_topic", "bad_id")


ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


@given(ids.filter(lambda s: s != t.SYS), ids, ids, ids, st.sampled_from(list(Kind)))
def test_any_valid_stream_round_trips(
    site: str, line: str, station: str, name: str, kind: Kind
) -> None:
    s = StreamRef(site, line, station, kind, name)
    topic = t.frame_topic(s) if kind is Kind.CAMERA else t.sensor_topic(s)
    assert t.parse(topic).stream == s
    assert StreamRef.parse_key(s.key) == s


@given(st.text(max_size=80))
def test_parse_never_raises_anything_but_topic_error(topic: str) -> None:
    try:
        t.parse(topic)
    except TopicError as err:
        assert err.reason in ("bad_topic", "bad_id", "bad_stream")
