"""Labelled image sets: rendered from the synthetic line, or read from a folder tree."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from edge.model.synthetic import GOOD, PART_TYPES, Sample, iter_samples
from edge.preprocess import InputSpec, PreprocessError, decode_image, normalise, resize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class DatasetError(ValueError):
    """A dataset folder that cannot be used (missing, no good/ class, unreadable image)."""


@dataclass
class Dataset:
    """Images as uint8 RGB [N, S, S, 3] with their labels (``good`` or a family)."""

    images: np.ndarray
    labels: list[str]
    parts: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Dataset:
        ix = np.asarray(idx, dtype=np.int64)
        return Dataset(self.images[ix], [self.labels[i] for i in ix], [self.parts[i] for i in ix])

    def where(self, labels: Iterable[str]) -> Dataset:
        keep = set(labels)
        return self.subset([i for i, lab in enumerate(self.labels) if lab in keep])

    def batches(self, spec: InputSpec, batch: int = 32) -> Iterable[np.ndarray]:
        """Normalised float32 batches through the shared preprocessing."""
        for s in range(0, len(self), batch):
            yield normalise(self.images[s : s + batch].astype(np.float32), spec)


def _render(job: tuple[int, int, int, int, tuple[str, ...], float, tuple[str, ...], str]) -> tuple:
    seed, i, size, render_size, families, fraction, parts, tier = job
    smp = next(
        iter_samples(
            seed,
            1,
            size=render_size,
            part_types=parts,
            families=families,
            defect_fraction=fraction,
            start=i,
            tier=tier,
        )
    )
    return np.asarray(resize(smp.image, size), dtype=np.uint8), smp.label, smp.part_type


def synthetic(
    seed: int,
    n: int,
    size: int,
    families: Sequence[str],
    defect_fraction: float = 0.5,
    part_types: Sequence[str] = PART_TYPES,
    desc: str = "render",
    render_size: int | None = None,
    tier: str = "standard",
) -> Dataset:
    """``n`` rendered parts (deterministic by ``seed``) at model input ``size``.

    Parts are drawn at the camera's ``render_size`` (default: ``size``) and resized with the
    edge worker's own function, as a camera frame would be. Rendering runs on every core.
    """
    jobs = [
        (
            seed,
            i,
            size,
            render_size or size,
            tuple(families),
            defect_fraction,
            tuple(part_types),
            tier,
        )
        for i in range(n)
    ]
    workers = min(available_cores(), max(1, n // 16))
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            res = list(tqdm(pool.imap(_render, jobs, chunksize=8), total=n, desc=desc, leave=False))
    else:
        res = [_render(j) for j in tqdm(jobs, desc=desc, unit="img", leave=False)]
    imgs = [r[0] for r in res]
    return Dataset(
        np.stack(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8),
        [r[1] for r in res],
        [r[2] for r in res],
    )


def write_samples(samples: Iterable[Sample], out: Path, total: int | None = None) -> int:
    """Write samples as ``out/<label>/<part>_<seed>_<i>.png``; returns the count."""
    count = 0
    for s in tqdm(samples, total=total, desc=f"write {out.name}", unit="img", leave=False):
        d = out / s.label
        d.mkdir(parents=True, exist_ok=True)
        s.image.save(d / f"{s.part_type}_{s.seed[0]}_{s.seed[1]:06d}.png")
        count += 1
    return count


def class_dirs(root: Path) -> list[str]:
    """Class folder names, ``good`` first; DatasetError when there is no ``good/``."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if GOOD not in names:
        raise DatasetError(
            f"dataset folder {root} has no '{GOOD}/' class folder "
            f"(found: {', '.join(names) or 'nothing'})"
        )
    return [GOOD] + [n for n in names if n != GOOD]


def load_folder(root: Path, size: int, classes: Sequence[str] | None = None) -> Dataset:
    """Read a flow_from_directory tree (``root/<class>/*.png|jpg``), resized to ``size``."""
    names = list(classes) if classes is not None else class_dirs(root)
    files = [
        (p, c)
        for c in names
        if (root / c).is_dir()
        for p in sorted((root / c).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DatasetError(f"dataset folder {root} holds no images")
    imgs = []
    for path, _ in tqdm(files, desc=f"read {root.name}", unit="img", leave=False):
        try:
            img = decode_image(path.read_bytes())
        except PreprocessError as exc:
            raise DatasetError(f"image {path}: {exc}") from None
        imgs.append(np.asarray(resize(img, size), dtype=np.uint8))
    return Dataset(np.stack(imgs), [c for _, c in files], ["?"] * len(files))


def split(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified split: ``fraction`` of each class goes to the second set."""
    rng = np.random.default_rng(seed)
    first: list[int] = []
    second: list[int] = []
    for lab in sorted(set(ds.labels)):
        idx = np.array([i for i, x in enumerate(ds.labels) if x == lab])
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        second += idx[:k].tolist()
        first += idx[k:].tolist()
    return ds.subset(sorted(first)), ds.subset(sorted(second))


def load_tree(root: Path, size: int, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(train, test) from ``root/train`` + ``root/test``, or a stratified held-out split."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return load_folder(root / "train", size), load_folder(root / "test", size)
    return split(load_folder(root, size), test_fraction, seed)


def save_png(img: np.ndarray, path: Path) -> None:
    Image.fromarray(img).save(path)
