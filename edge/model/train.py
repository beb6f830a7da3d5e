"""Fitting: data-dependent backbone calibration, patch projection, and the small heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
from tqdm import tqdm

from edge.model.architecture import batchnorm_layers, set_projection, submodel

log = logging.getLogger(__name__)
# BatchNorm calibration floors each channel's variance at this fraction of its layer's mean:
# a (nearly) dead channel would otherwise be divided by ~sqrt(epsilon) and amplify round-off.
VARIANCE_FLOOR = 0.01


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch: int = 32
    lr: float = 2e-3
    warmup_epochs: int = 2
    patience: int = 6
    class_weight_defect: float = 1.0
    seed: int = 0


def calibrate_batchnorm(model: keras.Model, nominal: np.ndarray, batch: int = 8) -> int:
    """Set every BatchNorm's moving statistics to the nominal frames' activation statistics.

    A data-dependent initialisation for a randomly initialised backbone: each layer's
    output is standardised on the line's own images, so deep features neither explode nor
    vanish. Returns the number of batches used. Not used for ImageNet weights.
    """
    bns = batchnorm_layers(model)
    backbone = submodel(model, "backbone")
    starts = list(range(0, len(nominal) - batch + 1, batch)) or [0]
    for k, s in enumerate(tqdm(starts, desc="calibrate batchnorm", unit="batch", leave=False)):
        for bn in bns:
            bn.momentum = k / (k + 1.0)  # running mean over the batches seen
        backbone(nominal[s : s + batch], training=True)
    for bn in bns:
        bn.momentum = 0.99
        # Channels (nearly) dead on nominal frames would be divided by ~sqrt(epsilon) and
        # amplify round-off 300×; floor each variance at 1 % of the layer's mean variance.
        var = np.asarray(bn.moving_variance)
        bn.moving_variance.assign(np.maximum(var, VARIANCE_FLOOR * float(var.mean()) + 1e-6))
    return len(starts)


def fit_projection(model: keras.Model, nominal: np.ndarray, batch: int = 8) -> None:
    """Standardise the concatenated tapped features (nominal mean/std) inside the projection."""
    proj = model.get_layer("patch_projection")
    tap = keras.Model(model.input, proj.input)
    s1 = s2 = None
    count = 0
    for s in tqdm(range(0, len(nominal), batch), desc="fit projection", unit="batch", leave=False):
        f = np.asarray(tap(nominal[s : s + batch], training=False), np.float64)
        f = f.reshape(-1, f.shape[-1])
        s1 = f.sum(0) if s1 is None else s1 + f.sum(0)
        s2 = (f**2).sum(0) if s2 is None else s2 + (f**2).sum(0)
        count += len(f)
    assert s1 is not None and s2 is not None
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0)) + 1e-3
    set_projection(model, mean.astype(np.float32), std.astype(np.float32))


def balanced_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights inversely proportional to class frequency (mean 1)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)[labels]
    return (w / w.mean()).astype(np.float32)


class _Bar(keras.callbacks.Callback):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.bar = tqdm(total=epochs, desc="train heads", unit="epoch", leave=False)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        self.bar.set_postfix(
            loss=f"{logs.get('loss', 0):.3f}", val=f"{logs.get('val_loss', 0):.3f}"
        )
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.bar.close()


def train_heads(
    model: keras.Model,
    feats: np.ndarray,
    labels: np.ndarray,
    val_feats: np.ndarray,
    val_labels: np.ndarray,
    class_names: Sequence[str],
    cfg: TrainConfig,
) -> dict[str, list[float]]:
    """Fit the heads on precomputed patch features; early stopping on the held-out split.

    Labels are class indices (0 = good). Loss: binary cross-entropy of the defect head plus
    cross-entropy of the class head, class-balanced; Adam with linear warm-up then cosine.
    """
    keras.utils.set_random_seed(cfg.seed)
    heads = submodel(model, "heads")
    n_cls = len(class_names)
    steps = max(1, int(np.ceil(len(feats) / cfg.batch)))
    sched = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr * 0.05,
        decay_steps=steps * cfg.epochs,
        warmup_target=cfg.lr,
        warmup_steps=steps * cfg.warmup_epochs,
    )
    heads.compile(
        optimizer=keras.optimizers.Adam(sched),
        loss={
            "defect_score": "binary_crossentropy",
            "class_scores": "sparse_categorical_crossentropy",
        },
        loss_weights={"defect_score": 1.0, "class_scores": 1.0},
    )
    y = {"defect_score": (labels > 0).astype(np.float32), "class_scores": labels}
    yv = {"defect_score": (val_labels > 0).astype(np.float32), "class_scores": val_labels}
    stop = keras.callbacks.EarlyStopping(
        patience=cfg.patience, restore_best_weights=True, monitor="val_loss"
    )
    hist = heads.fit(
        feats,
        y,
        sample_weight=balanced_weights(labels, n_cls),
        validation_data=(val_feats, yv),
        epochs=cfg.epochs,
        batch_size=cfg.batch,
        shuffle=True,
        verbose=0,
        callbacks=[stop, _Bar(cfg.epochs)],
    )
    return {k: [float(x) for x in v] for k, v in hist.history.items()}
