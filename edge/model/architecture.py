"""The Keras model: ResNet-50 backbone, patch features for novelty, defect and class heads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

BACKBONE_LAYERS = ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out")
OUTPUT_NAMES = ("embedding", "defect_score", "class_scores", "patch_features", "family_embedding")


class WeightsError(ValueError):
    """Weights that cannot be loaded (offline ImageNet download, missing or mismatched file)."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network; recorded in the model card."""

    input_size: int = 128
    class_names: tuple[str, ...] = ("good", "scratch", "dent", "missing", "stain", "discoloration")
    patch_layers: tuple[str, ...] = ("conv3_block4_out", "conv4_block6_out")
    patch_dim: int = 128
    patch_pool: int = 3
    head_width: int = 64
    extra: dict[str, str] = field(default_factory=dict)


class LogitPool(layers.Layer):
    """Image logit from a per-location logit map: smooth maximum (log-mean-exp, sharpness r)."""

    def __init__(self, r: float = 4.0, **kw: object) -> None:
        super().__init__(**kw)
        self.r = r

    def call(self, logit_map):
        flat = ops.reshape(logit_map, (ops.shape(logit_map)[0], -1))
        n = ops.cast(ops.shape(flat)[1], flat.dtype)
        return (ops.logsumexp(self.r * flat, axis=1) - ops.log(n)) / self.r

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "r": self.r}


class AttentionPool(layers.Layer):
    """Pools per-location features with softmax weights from the defect logit map."""

    def call(self, feats, logit_map):
        n = ops.shape(feats)[0]
        f = ops.reshape(feats, (n, -1, ops.shape(feats)[-1]))
        w = ops.softmax(ops.reshape(logit_map, (n, -1)), axis=1)
        return ops.sum(f * ops.expand_dims(w, -1), axis=1)


def build_heads(cfg: ModelConfig, grid: int) -> keras.Model:
    """Trainable heads on patch features: defect probability, class softmax, family embedding."""
    pf = keras.Input((grid, grid, cfg.patch_dim), name="patch_features")
    h = layers.Conv2D(cfg.head_width, 1, activation="relu", name="head_hidden")(pf)
    h = layers.Conv2D(cfg.head_width, 1, activation="relu", name="head_hidden2")(h)
    logit_map = layers.Conv2D(1, 1, name="defect_logit_map")(h)
    logit = LogitPool(name="defect_logit")(logit_map)
    defect = layers.Activation("sigmoid", name="defect_score")(logit)
    pooled = AttentionPool(name="family_embedding")(h, logit_map)
    classes = layers.Dense(len(cfg.class_names), activation="softmax", name="class_scores")(pooled)
    return keras.Model(
        pf,
        {"defect_score": defect, "class_scores": classes, "family_embedding": pooled},
        name="heads",
    )


def _resnet(cfg: ModelConfig, weights: str | None) -> keras.Model:
    size = (cfg.input_size, cfg.input_size, 3)
    if weights != "imagenet":
        return keras.applications.ResNet50(include_top=False, weights=None, input_shape=size)
    try:
        return keras.applications.ResNet50(include_top=False, weights="imagenet", input_shape=size)
    except Exception as exc:  # download failure: offline, proxy, DNS
        raise WeightsError(
            f"ImageNet weights could not be loaded ({type(exc).__name__}: {exc}); this machine "
            "may be offline: pass a local weights file (--weights PATH) or --weights none"
        ) from exc


def build_model(cfg: ModelConfig, weights: str | Path | None = None) -> keras.Model:
    """The whole network with outputs named as in OUTPUT_NAMES.

    ``weights``: ``"imagenet"`` (Keras download), a local ``.weights.h5`` file (a whole
    LineWatch model's weights, or a ResNet-50 backbone's), or ``None`` (random init).
    """
    wname = None if weights in (None, "none") else str(weights)
    base = _resnet(cfg, "imagenet" if wname == "imagenet" else None)
    taps = [base.get_layer(n).output for n in cfg.patch_layers]
    backbone = keras.Model(base.input, [*taps, base.output], name="backbone")
    image = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    outs = backbone(image)
    maps = [layers.AveragePooling2D(cfg.patch_pool, 1, "same")(o) for o in outs[:-1]]
    grid = int(maps[0].shape[1])
    maps = [
        m
        if int(m.shape[1]) == grid
        else layers.UpSampling2D(grid // int(m.shape[1]), interpolation="bilinear")(m)
        for m in maps
    ]
    cat = maps[0] if len(maps) == 1 else layers.Concatenate()(maps)
    proj = layers.Conv2D(
        cfg.patch_dim,
        1,
        name="patch_projection",
        trainable=False,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=7),
    )
    pf = proj(cat)
    heads = build_heads(cfg, grid)
    ho = heads(pf)
    emb = layers.GlobalAveragePooling2D(name="embedding")(outs[-1])
    model = keras.Model(
        image,
        {
            "embedding": emb,
            "defect_score": ho["defect_score"],
            "class_scores": ho["class_scores"],
            "patch_features": pf,
            "family_embedding": ho["family_embedding"],
        },
        name="linewatch",
    )
    if wname is not None and wname != "imagenet":
        load_weights_file(model, backbone, Path(wname))
    return model


def load_weights_file(model: keras.Model, backbone: keras.Model, path: Path) -> None:
    """Load a whole-model or backbone-only weights file; WeightsError names the file."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    errors = []
    for target in (model, backbone):
        try:
            target.load_weights(str(path))
            return
        except Exception as exc:  # Keras raises several types for mismatched files
            errors.append(f"{target.name}: {exc}")
    raise WeightsError(
        f"weights file {path} fits neither the model nor its ResNet-50 "
        f"backbone: {'; '.join(errors)}"
    )


def submodel(model: keras.Model, name: str) -> keras.Model:
    layer = model.get_layer(name)
    assert isinstance(layer, keras.Model)
    return layer


def features_model(model: keras.Model) -> keras.Model:
    """image -> patch features only (the part that does not train: cheap to precompute)."""
    return keras.Model(model.input, model.get_layer("patch_projection").output)


def set_projection(model: keras.Model, mean: np.ndarray, std: np.ndarray, seed: int = 7) -> None:
    """Fold per-channel standardisation (nominal mean/std) into the fixed random projection."""
    proj = model.get_layer("patch_projection")
    c_in = int(mean.shape[0])
    dim = int(proj.filters)
    rnd = np.random.default_rng(seed).standard_normal((c_in, dim)).astype(np.float32)
    rnd /= np.sqrt(c_in)
    w = rnd / np.maximum(std, 1e-6)[:, None]
    b = -(mean / np.maximum(std, 1e-6)) @ rnd
    proj.set_weights([w[None, None], b.astype(np.float32)])


def batchnorm_layers(model: keras.Model) -> Sequence[layers.BatchNormalization]:
    return [
        ly for ly in submodel(model, "backbone").layers if isinstance(ly, layers.BatchNormalization)
    ]
