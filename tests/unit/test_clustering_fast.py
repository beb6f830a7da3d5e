"""The clustering hot path's faster arithmetic and storage keep the results of the
straightforward code they replaced (kept here as the reference)."""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import calinski_harabasz_score

from services.clustering import alerts, state
from services.clustering.alerts import COMPACT_MIN, AlertConfig, AlertEvent, AlertTracker
from services.clustering.core import ClusterCore, CoreConfig, VectorRejected
from services.clustering.reduce import Reducer, calinski_harabasz, fit_reducer

pytestmark = pytest.mark.unit


def _gaussians(n: int, dim: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, dim))
    return (centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, dim))).astype(np.float32)


def test_reducer_apply_matches_the_formula() -> None:
    x = _gaussians(200, 64, 3, 1)
    unit = fit_reducer(x, 8, standardize=False)
    assert unit.unit_scale
    ref = (((x - unit.mean) / unit.scale) @ unit.components.T).astype(np.float32)
    assert np.array_equal(unit.apply(x), ref)  # exact: dividing by ones is skipped
    one = (((x[3] - unit.mean) / unit.scale) @ unit.components.T).astype(np.float32)
    assert np.array_equal(unit.apply(x[3]), one)
    std = fit_reducer(x * np.linspace(0.5, 3, 64, dtype=np.float32), 8, standardize=True)
    assert not std.unit_scale
    xs = x * np.linspace(0.5, 3, 64, dtype=np.float32)
    ref = ((xs - std.mean) / std.scale) @ std.components.T
    assert np.allclose(std.apply(xs), ref, rtol=1e-4, atol=1e-4)


def _reference_nearest(core: ClusterCore, x: np.ndarray) -> tuple[int, float]:
    assert core.reducer is not None
    z = core.reducer.apply(x)
    dz = ((core._pz - z) ** 2).sum(1)
    near = np.argsort(dz)[:3] if len(dz) > 3 else np.arange(len(dz))
    diff = (x - core.protos.raw[near]) / core.reducer.scale
    full = np.einsum("ij,ij->i", diff, diff)
    k = int(full.argmin())
    return int(near[k]), float(np.sqrt(full[k]))


@pytest.mark.parametrize("standardize", [False, True])
def test_nearest_matches_reference(standardize: bool) -> None:
    x = _gaussians(600, 32, 6, 2)
    core = ClusterCore(CoreConfig(dim=32, n_components=8, standardize=standardize, warmup=50))
    for i, v in enumerate(x[:400]):
        core.assign(v, float(i))
    assert core.reducer is not None and len(core.protos.ids) > 3
    for v in x[400:]:
        row, dist = core.nearest(v)
        ref_row, ref_dist = _reference_nearest(core, v)
        assert row == ref_row and dist == pytest.approx(ref_dist, rel=1e-5)


def test_validate_single_pass_rejects_as_before() -> None:
    core = ClusterCore(CoreConfig(dim=4))
    cases: dict[str, list[list[float]]] = {
        "vector holds NaN or inf": [[1, np.nan, 0, 0], [np.inf, 0, 0, 0], [-np.inf, 1e6, 0, 0]],
        "vector exceeds the float16 range": [[1e6, 0, 0, 0], [-65505, 0, 0, 0]],
    }
    for detail, rows in cases.items():
        for row in rows:
            with pytest.raises(VectorRejected) as info:
                core.validate(np.array(row))
            assert info.value.reason == "bad_value" and info.value.detail == detail
    ok = core.validate(np.array([65504, -65504, 0, 1], dtype=np.float16))
    assert ok.dtype == np.float32 and ok.tolist() == [65504, -65504, 0, 1]


def test_window_keeps_float16_input_as_sent() -> None:
    core = ClusterCore(CoreConfig(dim=8))
    v16 = np.random.default_rng(3).normal(size=8).astype("<f2")
    core.assign(v16, 0.0)
    core.assign(v16.astype(np.float32), 1.0)
    assert np.array_equal(core.window.vectors[0], v16)
    assert np.array_equal(core.window.vectors[1], v16)


@settings(max_examples=60, deadline=None)
@given(st.integers(20, 200), st.integers(2, 8), st.integers(0, 10**6))
def test_calinski_harabasz_matches_sklearn(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5)).astype(np.float32)
    labels = rng.integers(0, k, n)
    if len(np.unique(labels)) < 2:
        labels[0], labels[1] = 0, 1
    ours = calinski_harabasz(z.astype(np.float64), labels)
    assert ours == pytest.approx(calinski_harabasz_score(z, labels), rel=1e-12)
    with pytest.raises(ValueError):
        calinski_harabasz(z, np.zeros(n, dtype=np.int64))


# ---- the alert tracker's array history vs the list it replaced -------------------------------


class ReferenceTracker:
    """The list-based tracker the array history replaced (insort, delete from the front)."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self.times: dict[str, list[float]] = {}
        self.first: dict[str, float] = {}
        self.new_alerted: set[str] = set()
        self.last_growth: dict[str, float] = {}

    def _count(self, fam: str, lo: float, hi: float, right: bool = True) -> int:
        t = self.times[fam]
        end = bisect.bisect_right(t, hi) if right else bisect.bisect_left(t, hi)
        return max(end - bisect.bisect_right(t, lo), 0)

    def rate_per_hour(self, fam: str, now: float) -> float:
        if fam not in self.times:
            return 0.0
        win = self.config.growth_window_s
        return self._count(fam, now - win, now) / win * 3600.0

    def observe(self, fam: str, ts: float) -> list[tuple[str, int, float, float]]:
        cfg = self.config
        t = self.times.setdefault(fam, [])
        self.first[fam] = min(self.first.get(fam, ts), ts)
        bisect.insort(t, ts)
        cut = bisect.bisect_left(t, max(t[-1] - cfg.horizon_s, ts - cfg.horizon_s))
        excess = max(cut, len(t) - cfg.max_history)
        if excess > 0:
            del t[:excess]
        out = []
        if fam not in self.new_alerted:
            n = self._count(fam, ts - cfg.new_family_window_s, ts)
            if n >= cfg.new_family_members:
                self.new_alerted.add(fam)
                out.append(("new_family", n, self.rate_per_hour(fam, ts), 0.0))
        if ts - self.first[fam] < cfg.growth_window_s + cfg.growth_baseline_s:
            return out
        last = self.last_growth.get(fam)
        if last is not None and ts - last < cfg.growth_cooldown_s:
            return out
        start = ts - cfg.growth_window_s
        recent = self._count(fam, start, ts)
        if recent < cfg.growth_min_members:
            return out
        base = self._count(fam, start - cfg.growth_baseline_s, start, right=False)
        rate = recent / cfg.growth_window_s * 3600.0
        base_rate = max(base, 1) / cfg.growth_baseline_s * 3600.0
        if rate >= cfg.growth_factor * base_rate:
            self.last_growth[fam] = ts
            out.append(("family_growth", recent, rate, base_rate))
        return out


def _events(got: list[AlertEvent]) -> list[tuple[str, int, float, float]]:
    return [(e.kind, e.count, e.rate_per_hour, e.baseline_per_hour) for e in got]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B"]), st.floats(0, 20_000, allow_nan=False)),
        max_size=400,
    ),
    st.integers(3, 50),
)
def test_tracker_history_matches_a_sorted_list(events: list[tuple[str, float]], cap: int) -> None:
    cfg = AlertConfig(
        new_family_members=3,
        new_family_window_s=500,
        growth_window_s=100,
        growth_baseline_s=400,
        growth_min_members=3,
        growth_cooldown_s=50,
        max_history=cap,
    )
    ref, ours = ReferenceTracker(cfg), AlertTracker(cfg)
    ts0 = 0.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alerts, "COMPACT_MIN", 4)  # compact often
        for fam, dt in events:
            ts0 = max(ts0 + dt / 100 - 5, 0.0)  # mostly in order, some arrivals out of order
            assert _events(ours.observe(fam, ts0)) == ref.observe(fam, ts0)
            assert ours.rate_per_hour(fam, ts0) == ref.rate_per_hour(fam, ts0)
            assert ours.to_state()[fam]["times"].tolist() == ref.times[fam]


def test_tracker_compacts_and_round_trips() -> None:
    cfg = AlertConfig(max_history=1000)
    t = AlertTracker(cfg)
    for i in range(COMPACT_MIN * 3):
        t.observe("A", float(i))
    h = t._h["A"]
    assert len(h.times) - h.start == 1000 and len(h.times) < COMPACT_MIN + 2000
    saved = t.to_state()
    assert isinstance(saved["A"]["times"], np.ndarray)
    again = AlertTracker(cfg)
    again.load_state(saved)
    assert again.to_state()["A"]["times"].tolist() == saved["A"]["times"].tolist()
    assert again.rate_per_hour("A", 3 * COMPACT_MIN) == t.rate_per_hour("A", 3 * COMPACT_MIN)
    t.observe("B", 5.0)
    t.merge("B", "A")
    assert (
        t.to_state()["A"]["times"].tolist() == sorted([*saved["A"]["times"].tolist(), 5.0])[-1000:]
    )


# ---- state files: arrays for bulky series; format 1 still loads ------------------------------


def _core_with_history() -> tuple[ClusterCore, AlertTracker]:
    x = _gaussians(120, 16, 2, 4)
    core = ClusterCore(CoreConfig(dim=16, warmup=20))
    tracker = AlertTracker()
    for i, v in enumerate(x):
        got = core.assign(v, 100.0 + i, key=f"k{i}")
        tracker.observe(got.family, 100.0 + i)
    return core, tracker


def test_state_round_trip_keeps_arrays_and_dedup(tmp_path: Path) -> None:
    core, tracker = _core_with_history()
    path = tmp_path / "s.npz"
    state.save(core, path, {"alerts": tracker.to_state(), "note": ["x", 1]})
    again, extra = state.load(path)
    assert again.recent == core.recent
    assert extra["note"] == ["x", 1]
    restored = AlertTracker()
    restored.load_state(extra["alerts"])
    for fam, saved in tracker.to_state().items():
        assert np.array_equal(restored.to_state()[fam]["times"], saved["times"])
    with np.load(path) as npz:
        assert json.loads(str(npz["meta"]))["format"] == state.FORMAT == 2


def test_format_1_state_still_loads(tmp_path: Path) -> None:
    core, tracker = _core_with_history()
    path = tmp_path / "s.npz"
    state.save(core, path, {"alerts": tracker.to_state()})
    with np.load(path) as npz:  # rewrite it the way format 1 stored it
        arrays = {k: np.array(npz[k]) for k in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    dist = arrays.pop("recent_dist").tolist()
    meta["recent"] = [
        [k, f, d]
        for k, f, d in zip(meta.pop("recent_keys"), meta.pop("recent_families"), dist, strict=True)
    ]
    old_alerts = {}
    for fam, h in meta["extra"]["alerts"].items():
        old_alerts[fam] = {**h, "times": arrays.pop(h["times"]["$array"]).tolist()}
    meta["extra"] = {"alerts": old_alerts}
    meta["format"] = 1
    arrays["meta"] = np.array(json.dumps(meta))
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)  # type: ignore[arg-type]
    again, extra = state.load(old)
    assert again.recent == core.recent
    assert again.predict(core.window.vectors[:10]) == core.predict(core.window.vectors[:10])
    restored = AlertTracker()
    restored.load_state(extra["alerts"])
    for fam, saved in tracker.to_state().items():
        assert restored.to_state()[fam]["times"].tolist() == saved["times"].tolist()


def test_state_with_a_missing_array_is_refused(tmp_path: Path) -> None:
    core, tracker = _core_with_history()
    path = tmp_path / "s.npz"
    state.save(core, path, {"alerts": tracker.to_state()})
    with np.load(path) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files if not k.startswith("extra_")}
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(state.StateError, match="lacks the array"):
        state.load(path)


def test_reducer_is_still_a_plain_value() -> None:
    r = Reducer(np.zeros(3, np.float32), np.ones(3, np.float32), np.eye(2, 3, dtype=np.float32))
    assert r.unit_scale and r.dim == 3
    assert r.apply(np.array([1, 2, 3], np.float32)).tolist() == [1, 2]
