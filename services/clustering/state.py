"""Persist the clustering core to one ``.npz`` file (arrays + JSON metadata; no pickle).

Format 2 keeps every bulky series as an array (the dedup distances, the alert tracker's
timestamps): a save stays a few memory copies however full they are. Format 1 files (those
series inside the JSON metadata) still load."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from services.clustering.core import ClusterCore, CoreConfig, Family, Protos, Window
from services.clustering.reduce import Reducer

FORMAT = 2
READABLE = (1, 2)
_ARRAY_REF = "$array"  # {"$array": name} in the JSON metadata stands for the npz array ``name``


class StateError(RuntimeError):
    """The state file cannot be used (unreadable, other format, other vector dimension)."""


def _externalise(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with each numpy array replaced by a reference to an npz entry."""
    if isinstance(value, np.ndarray):
        name = f"extra_{len(arrays)}"
        arrays[name] = value
        return {_ARRAY_REF: name}
    if isinstance(value, dict):
        return {k: _externalise(v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_externalise(v, arrays) for v in value]
    return value


def _internalise(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(_ARRAY_REF), str):
            try:
                return arrays[value[_ARRAY_REF]]
            except KeyError:
                raise ValueError(f"state lacks the array {value[_ARRAY_REF]!r}") from None
        return {k: _internalise(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_internalise(v, arrays) for v in value]
    return value


def _write(core: ClusterCore, out: IO[bytes], extra: dict[str, Any] | None) -> None:
    """The core (and ``extra``: JSON values and numpy arrays, e.g. the alert tracker) as an
    ``.npz`` written to ``out``."""
    arrays: dict[str, np.ndarray] = {}
    extra_json = _externalise(extra or {}, arrays)
    recent = core.recent
    meta: dict[str, Any] = {
        "format": FORMAT,
        "config": asdict(core.config),
        "dim": core.dim,
        "families": [asdict(f) for f in core.families.values()],
        "next_family": core.next_family,
        "seen": core.seen,
        "lam": core.lam,
        "soft_lam": core.soft_lam,
        "mid_lam": core.mid_lam,
        "next_refit": core.next_refit,
        "refits": core.refits,
        "last_refit": core.last_refit,
        "suspects": list(core.suspects),
        "recent_keys": list(recent),
        "recent_families": [f for f, _ in recent.values()],
        "extra": extra_json,
    }
    arrays["recent_dist"] = np.fromiter((d for _, d in recent.values()), np.float64, len(recent))
    if core.dim is not None:
        p, w = core.protos, core.window
        arrays |= {"proto_ids": p.ids, "proto_raw": p.raw, "proto_counts": p.counts}
        rows = w.rows()
        arrays |= {"win_vectors": w.vectors[rows], "win_protos": w.protos[rows]}
        meta |= {"proto_family": p.family, "proto_next": p.next_id}
    if core.reducer is not None:
        r = core.reducer
        arrays |= {"red_mean": r.mean, "red_scale": r.scale, "red_components": r.components}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)  # type: ignore[arg-type]


def dumps(core: ClusterCore, extra: dict[str, Any] | None = None) -> bytes:
    """The core (and ``extra``, see :func:`save`) as ``.npz`` bytes."""
    buf = io.BytesIO()
    _write(core, buf, extra)
    return buf.getvalue()


def save(core: ClusterCore, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old or the new file.

    ``extra`` holds JSON values and numpy arrays (stored as arrays, loaded back as arrays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(core, f, extra)  # straight into the file: no in-memory copy of the npz
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, config: CoreConfig | None = None) -> tuple[ClusterCore, dict[str, Any]]:
    """Rebuild the core saved at ``path``; ``config`` (default: the saved one) may change
    thresholds and schedules but not the vector dimension."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        meta["extra"] = _internalise(meta.get("extra", {}), arrays)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise StateError(f"{path}: unreadable clustering state ({exc})") from None
    if meta.get("format") not in READABLE:
        raise StateError(f"{path}: state format {meta.get('format')!r}, expected one of {READABLE}")
    cfg = config or CoreConfig(**meta["config"])
    dim = meta["dim"]
    if cfg.dim is not None and dim is not None and cfg.dim != dim:
        raise StateError(f"{path}: state holds {dim}-d vectors, settings say {cfg.dim}")
    core = ClusterCore(cfg if dim is None or cfg.dim == dim else _with_dim(cfg, dim))
    core.families = {f["id"]: Family(**f) for f in meta["families"]}
    names = (
        "next_family",
        "seen",
        "lam",
        "soft_lam",
        "mid_lam",
        "next_refit",
        "refits",
        "last_refit",
    )
    for name in names:
        setattr(core, name, meta[name])
    core.suspects.extend(bool(s) for s in meta["suspects"])
    if meta["format"] == 1:
        core.recent = OrderedDict((k, (f, float(d))) for k, f, d in meta["recent"])
    else:
        dists = arrays["recent_dist"].tolist()
        triples = zip(meta["recent_keys"], meta["recent_families"], dists, strict=True)
        core.recent = OrderedDict((k, (f, float(d))) for k, f, d in triples)
    if dim is not None:
        _load_arrays(core, meta, arrays, int(dim))
    return core, meta["extra"]


def _with_dim(cfg: CoreConfig, dim: int) -> CoreConfig:
    from dataclasses import replace

    return replace(cfg, dim=dim)


def _load_arrays(
    core: ClusterCore, meta: dict[str, Any], a: dict[str, np.ndarray], dim: int
) -> None:
    core._protos = Protos(
        a["proto_ids"].astype(np.int64),
        a["proto_raw"].astype(np.float32).reshape(-1, dim),
        a["proto_counts"].astype(np.int64),
        list(meta["proto_family"]),
        int(meta["proto_next"]),
    )
    window = Window.empty(core.config.window, dim)
    vecs, protos = a["win_vectors"], a["win_protos"]
    for v, q in zip(vecs[-core.config.window :], protos[-core.config.window :], strict=True):
        window.add(v, int(q))
    core._window = window
    if "red_mean" in a:
        core.set_model(
            Reducer(a["red_mean"], a["red_scale"], a["red_components"]), core.lam, core.soft_lam
        )
