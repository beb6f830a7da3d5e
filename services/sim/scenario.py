"""Simulator scenarios: timed effects (bursts, a new family, drifts, silence), built-in or TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EffectKind = Literal[
    "defect_burst",
    "new_family",
    "lighting_drift",
    "camera_silent",
    "sensor_spike",
    "sensor_drift",
    "stuck_value",
]
CAMERA_KINDS = frozenset({"defect_burst", "new_family", "lighting_drift", "camera_silent"})
SENSOR_KINDS = frozenset({"sensor_spike", "sensor_drift", "stuck_value"})
# the parameters each kind takes besides kind/start/end/target
_PARAMS: dict[str, frozenset[str]] = {
    "defect_burst": frozenset({"rate"}),
    "new_family": frozenset({"family", "share"}),
    "lighting_drift": frozenset({"gain"}),
    "camera_silent": frozenset(),
    "sensor_spike": frozenset({"magnitude"}),
    "sensor_drift": frozenset({"rate"}),
    "stuck_value": frozenset(),
}
DEFAULT_NEW_FAMILY = "crack"  # the family the model build holds out of training


class ScenarioError(ValueError):
    """A scenario name or file that cannot be used."""


class Effect(BaseModel):
    """One timed effect. Times are seconds since the simulator started; ``end`` None = never.

    ``target`` is a glob over ``line/station/name`` of the camera or sensor it changes.
    ``rate`` is the defect probability of a burst, or a drift's speed in sensor std per s.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EffectKind
    start: float = Field(default=0.0, ge=0)
    end: float | None = Field(default=None, gt=0)
    target: str = Field(default="*", min_length=1, max_length=200)
    rate: float | None = Field(default=None, ge=0)
    family: str | None = None
    share: float | None = Field(default=None, ge=0, le=1)
    gain: float | None = Field(default=None, gt=0, le=4)
    magnitude: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Effect:
        given = {k for k in ("rate", "family", "share", "gain", "magnitude") if getattr(self, k)}
        extra = given - _PARAMS[self.kind]
        if extra:
            raise ValueError(f"{self.kind} takes no {', '.join(sorted(extra))}")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.kind == "defect_burst" and self.rate is not None and self.rate > 1:
            raise ValueError("a burst's rate is a probability (0..1)")
        return self

    def active(self, t: float) -> bool:
        return t >= self.start and (self.end is None or t < self.end)

    def hits(self, where: str) -> bool:
        """True when this effect targets the stream ``line/station/name``."""
        return fnmatchcase(where, self.target)

    def progress(self, t: float) -> float:
        """0 before start, 1 at (and after) end, linear between; 1 at once when end is None."""
        if t < self.start:
            return 0.0
        if self.end is None or t >= self.end:
            return 1.0
        return (t - self.start) / (self.end - self.start)


class Scenario(BaseModel):
    """A named list of effects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    effects: tuple[Effect, ...] = ()

    def camera_effects(self) -> tuple[Effect, ...]:
        return tuple(e for e in self.effects if e.kind in CAMERA_KINDS)

    def sensor_effects(self) -> tuple[Effect, ...]:
        return tuple(e for e in self.effects if e.kind in SENSOR_KINDS)

    def held_back(self) -> frozenset[str]:
        """Families that appear only through a ``new_family`` effect."""
        return frozenset(
            e.family or DEFAULT_NEW_FAMILY for e in self.effects if e.kind == "new_family"
        )


# Built-in scenarios, timed for a run of about a minute on the default topology
# (line1..N / st1..M / cam1.., sensors s1..).
BUILTIN: dict[str, tuple[Effect, ...]] = {
    "none": (),
    "defect-burst": (
        Effect(kind="defect_burst", start=15, end=30, rate=0.5, target="line1/st1/*"),
    ),
    "new-family": (Effect(kind="new_family", start=20, share=0.5),),
    "lighting-drift": (
        Effect(kind="lighting_drift", start=10, end=50, gain=0.6, target="line1/st1/*"),
    ),
    "camera-silent": (Effect(kind="camera_silent", start=20, end=35, target="line1/st2/cam1"),),
    "sensor-spike": (
        Effect(kind="sensor_spike", start=20, end=21, magnitude=15, target="line1/st1/s1"),
    ),
    "sensor-drift": (Effect(kind="sensor_drift", start=15, rate=0.3, target="line1/st1/s2"),),
    "stuck-value": (Effect(kind="stuck_value", start=20, end=40, target="line1/st1/s3"),),
}
BUILTIN["tour"] = tuple(e for name in BUILTIN for e in BUILTIN[name])


def load(spec: str) -> Scenario:
    """A built-in scenario by name, or a TOML file (``[[effects]]`` tables, optional ``name``)."""
    if spec in BUILTIN:
        return Scenario(name=spec, effects=BUILTIN[spec])
    path = Path(spec)
    if not path.suffix == ".toml":
        raise ScenarioError(
            f"unknown scenario {spec!r}: a TOML file or one of {', '.join(BUILTIN)}"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{spec}: {exc}") from None
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(f"{spec}: {errors}") from None


def combine(scenarios: Iterable[Scenario]) -> Scenario:
    """Several scenarios run together."""
    items = list(scenarios)
    return Scenario(
        name="+".join(s.name for s in items) or "none",
        effects=tuple(e for s in items for e in s.effects),
    )


def check_families(scenario: Scenario, families: Sequence[str]) -> None:
    """Every ``new_family`` must name a family the renderer draws."""
    unknown = sorted(scenario.held_back() - set(families))
    if unknown:
        raise ScenarioError(
            f"unknown defect family {', '.join(unknown)} (known: {', '.join(families)})"
        )
