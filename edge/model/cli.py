"""`linewatch model dataset|train|export|quantize|eval|build`: the ML engineer's command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.model import card as cardmod
from edge.model.build import PROFILES, config_for, run_build
from edge.model.dataset import DatasetError, write_samples
from edge.model.synthetic import DEFAULT_SIZE, DEFECT_FAMILIES, TIERS, iter_samples

log = logging.getLogger(__name__)
DEFAULT_ROOT = Path("var/models")
# Writes a history tree (train/, heldout/, manifest.json) from the store; the `linewatch`
# CLI passes services.model_cli's, since edge code never reads the database itself.
HistoryExport = Callable[[argparse.Namespace, Path], dict[str, Any]]


def served_dir() -> Path:
    """Where the workers load their model from (LINEWATCH_MODEL_DIR, as edge/settings.py)."""
    return Path(os.environ.get("LINEWATCH_MODEL_DIR") or DEFAULT_ROOT / "demo")


def _since(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return ts


def _history_opts(t: argparse.ArgumentParser) -> None:
    g = t.add_argument_group("retrain from history (instead of --data)")
    g.add_argument("--from-history", action="store_true", dest="from_history")
    g.add_argument("--camera", help="camera stream key site/line/station/camera/name")
    g.add_argument("--line", help="every camera of SITE/LINE")
    g.add_argument("--since", type=_since, help="ISO 8601 time with zone: only newer frames")
    g.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.25,
        dest="held_out_fraction",
        help="newest fraction of each kind held out for the comparison (default 0.25)",
    )
    g.add_argument("--served", type=Path, help="model to compare with (default: served dir)")
    g.add_argument("--db-url", dest="db_url", help="default: LINEWATCH_DB_URL")


def _build_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="demo",
        help="demo (default, ≤ 15 min), quick (≤ 3 min), full (≤ 45 min) or test (tiny, 64 px)",
    )
    p.add_argument("--name", help="model name (directory under var/models)")
    p.add_argument("--out", type=Path, help="output directory (default var/models/<name>)")
    p.add_argument("--size", type=int, help="input size in pixels")
    p.add_argument("--n-train", type=int, dest="n_train")
    p.add_argument("--n-test", type=int, dest="n_test")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--weights", help="none | imagenet | PATH to a .weights.h5 file")
    p.add_argument(
        "--held-out",
        dest="held_out",
        choices=DEFECT_FAMILIES,
        help="defect family left out of training (novelty is measured on it)",
    )
    p.add_argument("--no-quantize", action="store_true")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="linewatch model", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset", help="render the synthetic line as a flow_from_directory tree")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--n", type=int, default=1000, help="training images")
    d.add_argument("--n-test", type=int, default=300, dest="n_test", help="held-out images")
    d.add_argument("--size", type=int, default=DEFAULT_SIZE, help="camera resolution")
    d.add_argument("--tier", choices=TIERS, default="standard")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--defect-fraction", type=float, default=0.5, dest="defect_fraction")
    b = sub.add_parser("build", help="dataset → train → export → quantize → eval (cached)")
    _build_opts(b)
    t = sub.add_parser("train", help="train on a folder (good/, scratch/, …) and export")
    _build_opts(t)
    t.add_argument("--data", type=Path)
    _history_opts(t)
    pr = sub.add_parser("promote", help="install a retrained model if not worse on any family")
    pr.add_argument("candidate", type=Path)
    pr.add_argument("--to", type=Path, help="served directory (default: LINEWATCH_MODEL_DIR)")
    pr.add_argument("--force", action="store_true", help="install even if worse")
    pr.add_argument("--tolerance", type=float, default=0.0, help="allowed drop per figure")
    e = sub.add_parser("eval", help="held-out quality of a built model")
    e.add_argument("--model", type=Path, default=DEFAULT_ROOT / "demo")
    e.add_argument("--data", type=Path, help="flow_from_directory tree (default: synthetic)")
    e.add_argument("--n-test", type=int, default=600, dest="n_test")
    e.add_argument("--json", action="store_true")
    m = sub.add_parser("montage", help="PNG grid of the synthetic line (part type × family)")
    m.add_argument("--tier", choices=TIERS, default="standard")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--size", type=int, default=DEFAULT_SIZE, help="camera resolution")
    x = sub.add_parser("export", help="Keras weights file → ONNX (tf2onnx)")
    x.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_ROOT / "demo",
        help="model directory whose card describes the network",
    )
    x.add_argument("--weights", type=Path, help="default: <model>/model.weights.h5")
    x.add_argument("--out", type=Path, required=True)
    q = sub.add_parser("quantize", help="int8 copy, kept only when faster and accurate")
    q.add_argument("--model", type=Path, default=DEFAULT_ROOT / "demo")
    q.add_argument("--n-test", type=int, default=600, dest="n_test")
    return ap


def cmd_dataset(a: argparse.Namespace) -> int:
    n = write_samples(
        iter_samples(a.seed, a.n, size=a.size, defect_fraction=a.defect_fraction, tier=a.tier),
        a.out / "train",
        a.n,
    )
    m = write_samples(
        iter_samples(
            a.seed + 1_000_003,
            a.n_test,
            size=a.size,
            defect_fraction=a.defect_fraction,
            tier=a.tier,
        ),
        a.out / "test",
        a.n_test,
    )
    print(f"wrote {n} training and {m} held-out images under {a.out}")
    return 0


def cmd_build(a: argparse.Namespace, data: Path | None = None) -> int:
    weights = None if a.weights in (None, "none") else a.weights
    name = a.name or (_safe_name(data.name) if data else None)
    cfg = config_for(
        a.profile,
        name=name,
        size=a.size,
        n_train=a.n_train,
        n_test=a.n_test,
        epochs=a.epochs,
        seed=a.seed,
        held_out=a.held_out,
        weights=weights,
        data=str(data) if data else None,
    )
    if a.no_quantize:
        cfg = replace(cfg, quantize=False)
    out = a.out or DEFAULT_ROOT / cfg.name
    card = run_build(cfg, out, force=a.force)
    m = card["metrics"]
    print(
        f"model {out}: serve {card['serve']}, image_auroc {m.get('image_auroc')}, "
        f"good_fpr {m.get('good_fpr')}, built in {card['build_seconds']} s"
    )
    return 0


def cmd_train(a: argparse.Namespace, export: HistoryExport | None) -> int:
    if not a.from_history:
        if a.data is None:
            raise ValueError("name --data DIR, or --from-history with --camera or --line")
        return cmd_build(a, a.data)
    if a.data is not None:
        raise ValueError("--data and --from-history exclude each other")
    if a.held_out is not None:
        raise ValueError("--held-out does not apply to --from-history (it measures by family)")
    if export is None:
        raise RuntimeError("--from-history reads the store: run it as `linewatch model train`")
    from edge.model.retrain import retrain

    served = a.served or served_dir()
    out = a.out or DEFAULT_ROOT / (a.name or "history")
    tree = out.parent / f".{out.name}.history"  # ours: the last export is replaced
    if tree.exists():
        shutil.rmtree(tree)
    manifest = export(a, tree)
    n = {s: sum(r["count"] for r in manifest[s].values()) for s in ("train", "heldout")}
    print(f"history: {n['train']} frames to train on, {n['heldout']} held out, under {tree}")
    weights = None if a.weights in (None, "none") else a.weights
    card = retrain(
        tree,
        served,
        out,
        profile=a.profile,
        epochs=a.epochs,
        name=a.name,
        size=a.size,
        weights=weights,
    )
    print(_dump({"model": str(out), "history": card["metrics"]["history"]}))
    return 0


def cmd_promote(a: argparse.Namespace) -> int:
    from edge.model.promote import promote

    print(_dump(promote(a.candidate, a.to or served_dir(), force=a.force, tolerance=a.tolerance)))
    return 0


def _safe_name(text: str) -> str:
    """A model directory name from a data folder name (``[A-Za-z0-9_-]``, default ``model``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:64] or "model"


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def main(argv: list[str], export: HistoryExport | None = None) -> int:
    a = _parser().parse_args(argv)
    from edge.model import tools  # imports onnxruntime/TensorFlow only when needed
    from edge.model.promote import PromoteError

    try:
        if a.cmd == "dataset":
            return cmd_dataset(a)
        if a.cmd == "montage":
            from edge.model.montage import montage

            print(f"wrote {montage(a.out, a.tier, a.seed, a.size)}")
            return 0
        if a.cmd == "build":
            return cmd_build(a)
        if a.cmd == "train":
            return cmd_train(a, export)
        if a.cmd == "promote":
            return cmd_promote(a)
        if a.cmd == "eval":
            res = tools.evaluate_model(a.model, a.data, a.n_test)
            print(_dump(res) if a.json else tools.summary(res))
            return 0
        if a.cmd == "export":
            print(tools.export_model(a.model, a.weights, a.out))
            return 0
        if a.cmd == "quantize":
            print(_dump(tools.quantize_model(a.model, a.n_test)))
            return 0
    except (cardmod.CardError, DatasetError, PromoteError, ValueError, RuntimeError) as exc:
        print(f"linewatch model {a.cmd}: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
