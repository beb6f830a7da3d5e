"""The MQTT topic map: every LineWatch topic is built and parsed here, and nowhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "lw/v1"
SYS = "_sys"  # reserved first level for system topics; no site may be called "_sys"
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class TopicError(ValueError):
    """A topic or id that does not follow the contract."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` when it is a valid contract id, else raise TopicError(bad_id)."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise TopicError("bad_id", f"{what} {shown} must match [A-Za-z0-9_-]{{1,64}}")
    return value


class Kind(StrEnum):
    """What a stream carries."""

    CAMERA = "camera"
    SENSOR = "sensor"


@dataclass(frozen=True, order=True)
class StreamRef:
    """One camera or sensor stream: ``site/line/station/{camera|sensor}/name``."""

    site: str
    line: str
    station: str
    kind: Kind
    name: str

    def __post_init__(self) -> None:
        for field, value in (
            ("site", self.site),
            ("line", self.line),
            ("station", self.station),
            ("name", self.name),
        ):
            check_id(value, field)
        if self.site == SYS:
            raise TopicError("bad_id", f"site id {SYS!r} is reserved")

    @property
    def key(self) -> str:
        """Stable textual id, ``site/line/station/camera/name``; used in SQL and assignments."""
        return f"{self.site}/{self.line}/{self.station}/{self.kind.value}/{self.name}"

    @property
    def station_key(self) -> str:
        return f"{self.site}/{self.line}/{self.station}"

    @classmethod
    def parse_key(cls, key: str) -> StreamRef:
        """Inverse of :attr:`key`; also accepts the short camera form ``site/line/station/cam``."""
        parts = key.split("/")
        if len(parts) == 4:
            parts = [*parts[:3], Kind.CAMERA.value, parts[3]]
        if len(parts) != 5 or parts[3] not in (k.value for k in Kind):
            raise TopicError(
                "bad_stream", f"{key[:120]!r} is not site/line/station/(camera|sensor)/name"
            )
        return cls(parts[0], parts[1], parts[2], Kind(parts[3]), parts[4])

    @classmethod
    def camera(cls, site: str, line: str, station: str, name: str) -> StreamRef:
        return cls(site, line, station, Kind.CAMERA, name)

    @classmethod
    def sensor(cls, site: str, line: str, station: str, name: str) -> StreamRef:
        return cls(site, line, station, Kind.SENSOR, name)


# ---- inputs (published by cameras and sensors) -------------------------------------------


def frame_topic(s: StreamRef) -> str:
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/frame"


def sensor_topic(s: StreamRef) -> str:
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/sensor/{s.name}"


# ---- per-stream outputs (published by edge workers) --------------------------------------


def verdict_topic(s: StreamRef) -> str:
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/verdict"


def features_topic(s: StreamRef) -> str:
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/features"


def gap_topic(s: StreamRef) -> str:
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/{s.kind.value}/{s.name}/gap"


def readings_topic(s: StreamRef) -> str:
    """Validated sensor readings forwarded by a worker for storage, in batches."""
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/sensor/{s.name}/readings"


def sensor_anomaly_topic(s: StreamRef) -> str:
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/sensor/{s.name}/anomaly"


def alert_topic(site: str, line: str, station: str) -> str:
    return f"{ROOT}/{check_id(site)}/{check_id(line)}/{check_id(station)}/alert"


# ---- system topics -----------------------------------------------------------------------


def worker_status_topic(worker: str) -> str:
    """Retained birth/death plus heartbeats of one process (worker, store, dispatcher, ...)."""
    return f"{ROOT}/{SYS}/status/{check_id(worker, 'worker')}"


def assignment_topic(worker: str) -> str:
    """Retained per-worker assignment, written only by the leading dispatcher."""
    return f"{ROOT}/{SYS}/assign/{check_id(worker, 'worker')}"


def family_topic(family: str) -> str:
    return f"{ROOT}/{SYS}/family/{check_id(family, 'family')}"


def frame_family_topic(s: StreamRef) -> str:
    """The clustering service's family decision for one anomalous frame."""
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/family"


def threshold_control_topic(s: StreamRef) -> str:
    """Operators (feed) ask a worker to change a camera's thresholds here."""
    return f"{ROOT}/{SYS}/control/threshold/{s.site}/{s.line}/{s.station}/{s.name}"


def threshold_change_topic(s: StreamRef) -> str:
    """A worker announces an applied threshold change here (stored)."""
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/threshold"


def feedback_control_topic(s: StreamRef) -> str:
    """Operators' feedback on a camera's frames (feed -> the worker running the camera)."""
    return f"{ROOT}/{SYS}/control/feedback/{s.site}/{s.line}/{s.station}/{s.name}"


def feedback_result_topic(s: StreamRef) -> str:
    """A worker's answer to one feedback: applied, held, kept or rejected (stored)."""
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/feedback"


def teach_topic(s: StreamRef) -> str:
    """A camera's taught state, retained and versioned: every change is published here."""
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/teach"


def history_frame_topic(s: StreamRef) -> str:
    """A worker's sample of the frames it judged good, kept for retraining (stored)."""
    return f"{ROOT}/{s.site}/{s.line}/{s.station}/camera/{s.name}/sample"


def family_control_topic() -> str:
    """Operators (feed) ask the clustering service to rename/merge/split a family here."""
    return f"{ROOT}/{SYS}/control/family"


def dispatch_decision_topic() -> str:
    return f"{ROOT}/{SYS}/dispatch/decision"


def dead_letter_topic(component: str) -> str:
    return f"{ROOT}/{SYS}/deadletter/{check_id(component, 'component')}"


# ---- subscription patterns ---------------------------------------------------------------

ALL_FRAMES = f"{ROOT}/+/+/+/camera/+/frame"
ALL_SENSORS = f"{ROOT}/+/+/+/sensor/+"
ALL_VERDICTS = f"{ROOT}/+/+/+/camera/+/verdict"
ALL_FEATURES = f"{ROOT}/+/+/+/camera/+/features"
ALL_FRAME_FAMILIES = f"{ROOT}/+/+/+/camera/+/family"
ALL_THRESHOLD_CHANGES = f"{ROOT}/+/+/+/camera/+/threshold"
ALL_FEEDBACK_RESULTS = f"{ROOT}/+/+/+/camera/+/feedback"
ALL_TEACH = f"{ROOT}/+/+/+/camera/+/teach"
ALL_HISTORY_FRAMES = f"{ROOT}/+/+/+/camera/+/sample"
ALL_GAPS = f"{ROOT}/+/+/+/+/+/gap"
ALL_READINGS = f"{ROOT}/+/+/+/sensor/+/readings"
ALL_SENSOR_ANOMALIES = f"{ROOT}/+/+/+/sensor/+/anomaly"
ALL_ALERTS = f"{ROOT}/+/+/+/alert"
ALL_STATUS = f"{ROOT}/{SYS}/status/+"
ALL_ASSIGNMENTS = f"{ROOT}/{SYS}/assign/+"
ALL_FAMILIES = f"{ROOT}/{SYS}/family/+"
ALL_THRESHOLD_CONTROL = f"{ROOT}/{SYS}/control/threshold/+/+/+/+"
ALL_FEEDBACK_CONTROL = f"{ROOT}/{SYS}/control/feedback/+/+/+/+"
FAMILY_CONTROL = f"{ROOT}/{SYS}/control/family"
ALL_DEAD_LETTERS = f"{ROOT}/{SYS}/deadletter/+"
DISPATCH_DECISIONS = f"{ROOT}/{SYS}/dispatch/decision"


class Route(StrEnum):
    """What a concrete topic is, as told by :func:`parse`."""

    FRAME = "frame"
    SENSOR = "sensor"
    VERDICT = "verdict"
    FEATURES = "features"
    FRAME_FAMILY = "family"
    THRESHOLD_CHANGE = "threshold"
    FEEDBACK_RESULT = "feedback"
    TEACH = "teach"
    HISTORY_FRAME = "sample"
    GAP = "gap"
    READINGS = "readings"
    SENSOR_ANOMALY = "anomaly"
    ALERT = "alert"
    STATUS = "status"
    ASSIGNMENT = "assign"
    FAMILY = "family_update"
    THRESHOLD_CONTROL = "threshold_control"
    DEAD_LETTER = "deadletter"
    DISPATCH_DECISION = "dispatch_decision"
    FAMILY_CONTROL = "family_control"
    FEEDBACK_CONTROL = "feedback_control"


@dataclass(frozen=True)
class Parsed:
    """A parsed topic: its route, the stream when it has one, and the trailing id otherwise."""

    route: Route
    stream: StreamRef | None = None
    station: tuple[str, str, str] | None = None
    ident: str | None = None


_CAMERA_SUFFIX = {
    "frame": Route.FRAME,
    "verdict": Route.VERDICT,
    "features": Route.FEATURES,
    "family": Route.FRAME_FAMILY,
    "threshold": Route.THRESHOLD_CHANGE,
    "feedback": Route.FEEDBACK_RESULT,
    "teach": Route.TEACH,
    "sample": Route.HISTORY_FRAME,
    "gap": Route.GAP,
}
_SENSOR_SUFFIX = {"readings": Route.READINGS, "anomaly": Route.SENSOR_ANOMALY, "gap": Route.GAP}
_SYS_ONE = {
    "status": Route.STATUS,
    "assign": Route.ASSIGNMENT,
    "family": Route.FAMILY,
    "deadletter": Route.DEAD_LETTER,
}


def parse(topic: str) -> Parsed:
    """Parse a concrete topic into its route; raise TopicError(bad_topic|bad_id) otherwise."""
    if len(topic) > 512 or "\x00" in topic:
        raise TopicError("bad_topic", f"{topic[:80]!r} is too long or holds NUL")
    parts = topic.split("/")
    if parts[:2] != ROOT.split("/") or len(parts) < 4:
        raise TopicError("bad_topic", f"{topic[:120]!r} is outside {ROOT}/")
    rest = parts[2:]
    if rest[0] == SYS:
        return _parse_sys(topic, rest[1:])
    if len(rest) == 4 and rest[3] == "alert":
        site, line, station = (check_id(x) for x in rest[:3])
        return Parsed(Route.ALERT, station=(site, line, station))
    if len(rest) in (5, 6) and rest[3] in ("camera", "sensor"):
        stream = StreamRef(rest[0], rest[1], rest[2], Kind(rest[3]), rest[4])
        if len(rest) == 5:
            if stream.kind is Kind.SENSOR:
                return Parsed(Route.SENSOR, stream=stream)
        else:
            table = _CAMERA_SUFFIX if stream.kind is Kind.CAMERA else _SENSOR_SUFFIX
            if rest[5] in table:
                return Parsed(table[rest[5]], stream=stream)
    raise TopicError("bad_topic", f"{topic[:120]!r} is not a LineWatch topic")


def _parse_sys(topic: str, rest: list[str]) -> Parsed:
    if len(rest) == 2 and rest[0] in _SYS_ONE:
        return Parsed(_SYS_ONE[rest[0]], ident=check_id(rest[1]))
    if rest == ["dispatch", "decision"]:
        return Parsed(Route.DISPATCH_DECISION)
    if rest == ["control", "family"]:
        return Parsed(Route.FAMILY_CONTROL)
    if len(rest) == 6 and rest[:2] == ["control", "threshold"]:
        return Parsed(Route.THRESHOLD_CONTROL, stream=StreamRef.camera(*rest[2:]))
    if len(rest) == 6 and rest[:2] == ["control", "feedback"]:
        return Parsed(Route.FEEDBACK_CONTROL, stream=StreamRef.camera(*rest[2:]))
    raise TopicError("bad_topic", f"{topic[:120]!r} is not a LineWatch system topic")
