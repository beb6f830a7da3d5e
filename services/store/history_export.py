"""Stored history as a training tree: split by time (each kind's newest frames held out, never
trained on) and written as ``train/<label>/`` and ``heldout/<label>/`` PNGs plus a manifest
naming every file's frame key and stream and the time range of each split."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from services.store.history_queries import GOOD, HistoryError, HistoryItem, history_items

MANIFEST = "manifest.json"
MIN_GOOD = 20  # good frames in all (samples and not-a-defect marks)
MIN_FAMILY = 4  # confirmed defects of a family: at least 1 held out, 3 to train on


def split_by_time(
    items: Sequence[HistoryItem], fraction: float
) -> tuple[list[HistoryItem], list[HistoryItem]]:
    """(train, held out): per label, the newest ``ceil(fraction * n)`` frames are held out.

    Per label so that each family is measured, by time so that nothing held out is older
    than what was trained on (a model must be judged on frames it could not have seen)."""
    if not 0.0 < fraction < 1.0:
        raise HistoryError(f"held-out fraction {fraction} must be between 0 and 1")
    train: list[HistoryItem] = []
    held: list[HistoryItem] = []
    for label in sorted({i.label for i in items}):
        group = sorted((i for i in items if i.label == label), key=lambda i: (i.ts, i.key))
        k = min(len(group) - 1, max(1, math.ceil(fraction * len(group))))
        train += group[: len(group) - k]
        held += group[len(group) - k :]
    return train, held


def check_enough(items: Sequence[HistoryItem]) -> tuple[list[str], dict[str, int]]:
    """(families usable, families left out with their counts); HistoryError when too little."""
    counts: dict[str, int] = {}
    for i in items:
        counts[i.label] = counts.get(i.label, 0) + 1
    fams = sorted(f for f, n in counts.items() if f != GOOD and n >= MIN_FAMILY)
    short = {f: n for f, n in counts.items() if f != GOOD and n < MIN_FAMILY}
    problems = []
    if counts.get(GOOD, 0) < MIN_GOOD:
        problems.append(
            f"{counts.get(GOOD, 0)} good frames (need {MIN_GOOD}: sampled good frames, "
            "LINEWATCH_HISTORY_SAMPLE_EVERY, or not_a_defect marks with their image)"
        )
    if not fams:
        have = ", ".join(f"{f}: {n}" for f, n in sorted(short.items())) or "none"
        problems.append(
            f"no defect family with {MIN_FAMILY} confirmed defects with their image ({have})"
        )
    if problems:
        raise HistoryError("too little history to train on: " + "; ".join(problems))
    return fams, short


def _name(item: HistoryItem) -> str:
    return hashlib.sha256(item.key.encode()).hexdigest()[:20] + ".png"


def _write(items: Sequence[HistoryItem], root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items:
        d = root / it.label
        d.mkdir(parents=True, exist_ok=True)
        (d / _name(it)).write_bytes(it.png)
        rec = out.setdefault(
            it.label, {"count": 0, "first": it.ts, "last": it.ts, "files": {}, "streams": {}}
        )
        rec["count"] += 1
        rec["first"], rec["last"] = min(rec["first"], it.ts), max(rec["last"], it.ts)
        rec["files"][_name(it)] = it.key
        rec["streams"][_name(it)] = it.stream
    return out


def export_history(
    engine: Engine,
    out: Path,
    *,
    camera: str | None = None,
    line: str | None = None,
    since: datetime | None = None,
    fraction: float = 0.25,
) -> dict[str, Any]:
    """Write the split tree under ``out`` (which must not hold one yet); returns the manifest."""
    if out.exists() and any(out.iterdir()):
        raise HistoryError(f"history tree {out} already exists and is not empty")
    items = history_items(engine, camera=camera, line=line, since=since)
    fams, short = check_enough(items)
    usable = [i for i in items if i.label == GOOD or i.label in fams]
    train, held = split_by_time(usable, fraction)
    manifest: dict[str, Any] = {
        "selection": {"camera": camera, "line": line, "since": since},
        "held_out_fraction": fraction,
        "families": fams,
        "left_out_families": short,
        "streams": sorted({i.stream for i in usable}),
        "train": _write(train, out / "train"),
        "heldout": _write(held, out / "heldout"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return json.loads((out / MANIFEST).read_text())
