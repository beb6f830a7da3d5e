"""`linewatch model build`: data → calibrate → export → heads → quantize → eval → card."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edge.model import card as cardmod
from edge.model.dataset import Dataset, load_tree, split, synthetic
from edge.model.synthetic import DEFECT_FAMILIES, GOOD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    """Every input of a build (its hash decides whether a cached build is reused)."""

    name: str = "demo"
    size: int = 224  # model input; frames are rendered at render_size and resized
    render_size: int = 448  # the synthetic camera's resolution
    n_train: int = 1400
    n_test: int = 600
    variation_frames: int = 300  # good frames per part type for its variation model
    train_defect_fraction: float = 0.3
    faint: bool = True  # also measure the faint tier (reported in the card, no bar)
    seed: int = 1
    test_seed: int = 1_000_003  # held-out seeds: never rendered for training
    held_out: str | None = "crack"  # family left out of training (novelty is measured on it)
    val_fraction: float = 0.2
    bank_size: int = 4096
    weights: str | None = None  # None | "imagenet" | path to a .weights.h5
    data: str | None = None  # a flow_from_directory tree instead of the synthetic line
    epochs: int = 40
    calib_images: int = 256
    target_fpr: float = 0.01
    quantize: bool = True


PROFILES: dict[str, BuildConfig] = {
    "demo": BuildConfig(),
    # The first minutes of a demo, and tests that need a real 224 px model: ≤ 3 min.
    "quick": BuildConfig(
        name="quick",
        n_train=420,
        n_test=240,
        variation_frames=100,
        epochs=5,
        calib_images=64,
        quantize=False,
        faint=False,
    ),
    "full": BuildConfig(name="full", n_train=3000, n_test=1200, variation_frames=500),
    # Small and fast (≈ 1–2 min): for tests that need a real model file, not for quality.
    "test": BuildConfig(
        name="test",
        size=64,
        render_size=128,
        n_train=240,
        n_test=120,
        variation_frames=30,
        bank_size=1024,
        epochs=6,
        calib_images=64,
        quantize=False,
        faint=False,
    ),
}
_SOURCES = (
    "architecture.py",
    "build.py",
    "card.py",
    "export.py",
    "novelty.py",
    "quantize.py",
    "synthetic.py",
    "synthetic_parts.py",
    "synthetic_defects.py",
    "train.py",
    "evaluate.py",
    "cnr.py",
    "register.py",
    "variation.py",
    "variation_set.py",
    "dataset.py",
    "pipeline.py",
)


def build_hash(cfg: BuildConfig) -> str:
    """Hash of the config, the model code and (for --data) the data tree's listing."""
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    here = Path(__file__).parent
    for name in (*_SOURCES, "../preprocess.py"):
        p = here / name
        if p.exists():
            h.update(p.read_bytes())
    if cfg.data:
        for p in sorted(Path(cfg.data).rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(cfg.data)}:{st.st_size}:{st.st_mtime_ns}".encode())
    if cfg.weights and cfg.weights not in ("imagenet", "none") and Path(cfg.weights).is_file():
        h.update(cardmod.sha256_file(Path(cfg.weights)).encode())
    return h.hexdigest()[:16]


def is_current(out: Path, digest: str) -> bool:
    """True when ``out`` holds a complete build with this hash and untouched files."""
    try:
        card = cardmod.load_card(out / cardmod.CARD_NAME)
    except cardmod.CardError:
        return False
    if card.recipe.get("build_hash") != digest:
        return False
    for name, rec in card.files.items():
        p = out / name
        if not p.is_file() or p.stat().st_size != rec.bytes:
            return False
    return (out / card.serve).is_file()


def load_data(cfg: BuildConfig) -> tuple[Dataset, Dataset, tuple[str, ...]]:
    """(train, test, class names) from the synthetic line or a folder tree."""
    if cfg.data:
        train, test = load_tree(Path(cfg.data), cfg.size, 0.2, cfg.seed)
        names = [GOOD, *sorted(set(train.labels) - {GOOD})]
        return train, test, tuple(names)
    known = tuple(f for f in DEFECT_FAMILIES if f != cfg.held_out)
    train = synthetic(
        cfg.seed,
        cfg.n_train,
        cfg.size,
        known,
        cfg.train_defect_fraction,
        desc="render train",
        render_size=cfg.render_size,
    )
    test = synthetic(
        cfg.test_seed,
        cfg.n_test,
        cfg.size,
        DEFECT_FAMILIES,
        desc="render test",
        render_size=cfg.render_size,
    )
    return train, test, (GOOD, *known)


def run_build(cfg: BuildConfig, out: Path, force: bool = False) -> dict[str, Any]:
    """Build into ``out`` (atomically: a temp dir renamed at the end); returns the card dict."""
    digest = build_hash(cfg)
    if not force and is_current(out, digest):
        log.info("model %s is up to date (build %s)", out, digest)
        return cardmod.load_card(out / cardmod.CARD_NAME).model_dump(mode="json")
    from edge.model.pipeline import build_into  # TensorFlow import only when building

    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        train, test, names = load_data(cfg)
        fit, val = split(train, cfg.val_fraction, cfg.seed)
        card = build_into(cfg, work, fit, val, test, names, digest, t0)
        final = work / "final"
        if out.exists():
            shutil.rmtree(out)
        final.rename(out)
    return card.model_dump(mode="json")


def config_for(profile: str, **overrides: Any) -> BuildConfig:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    base = PROFILES[profile]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
