"""Shared benchmark helpers: host facts, quality bars, the verdict and the one JSON line."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

LOAD_LIMIT = 0.5  # load average before the run above this -> inconclusive
SPREAD_LIMIT = 0.15  # trial spread above this -> inconclusive
RELEVANT_FLAGS = (
    "sse4_2",
    "fma",
    "f16c",
    "avx",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
OPS = {">=": lambda v, b: v >= b, "<=": lambda v, b: v <= b}


def parse_cpuinfo(text: str) -> tuple[str, list[str]]:
    """CPU model name and the relevant instruction-set flags from /proc/cpuinfo text."""
    model: str = "unknown"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, [f for f in RELEVANT_FLAGS if f in flags]


def host_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """What machine this ran on, and how busy it was just before."""
    try:
        model, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    except OSError:
        model, flags = "unknown", []
    return {
        "cpu": model,
        "flags": flags,
        "cores": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
    }


def bar(name: str, value: float, op: str, bar: float) -> dict[str, Any]:
    """One quality bar: ``value op bar`` (op is ">=" or "<="), with its outcome."""
    limit = bar
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, not {op!r}")
    ok = bool(OPS[op](float(value), float(limit)))
    return {"name": name, "value": float(value), "op": op, "bar": float(limit), "ok": ok}


def spread(trials: Sequence[float]) -> float:
    """Relative spread of repeated trials: (max - min) / median (0 for fewer than 2)."""
    if len(trials) < 2:
        return 0.0
    mid = statistics.median(trials)
    return (max(trials) - min(trials)) / mid if mid else float("inf")


def verdict(
    bars: Iterable[Mapping[str, Any]], *, spread: float | None, load_before: float | None
) -> str:
    if (load_before is not None and load_before > LOAD_LIMIT) or (
        spread is not None and spread > SPREAD_LIMIT
    ):
        return "inconclusive"
    return "pass" if all(b["ok"] for b in bars) else "fail"


def make_report(
    results: Mapping[str, Any],
    bars: Sequence[Mapping[str, Any]],
    *,
    spread: float | None = None,
    load_before: float | None = None,
    host: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report every benchmark prints. ``load_before`` defaults to the host's load now."""
    host_d = dict(host) if host is not None else host_info()
    if load_before is None:
        load_before = host_d.get("load_before")
    else:
        host_d["load_before"] = load_before
    out_results = dict(results)
    if spread is not None:
        out_results.setdefault("spread", round(spread, 4))
    return {
        "host": host_d,
        "results": out_results,
        "bars": [dict(b) for b in bars],
        "verdict": verdict(bars, spread=spread, load_before=load_before),
    }


def _finite(obj: Any) -> Any:
    """NaN/inf become null, so the output stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def emit(report: Mapping[str, Any]) -> None:
    """Print the report as one JSON line on stdout (strict JSON: NaN/inf as null)."""
    sys.stdout.write(json.dumps(_finite(report), separators=(",", ":"), allow_nan=False) + "\n")
    sys.stdout.flush()
