"""The model end to end on a few images: Keras → tf2onnx → onnxruntime, weights, training, errors.

Hermetic (no network, no broker) but slow-ish (TensorFlow import and one tf2onnx export),
so it lives in the integration tier.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from edge.model import card as cardmod
from edge.model import export, train
from edge.model.architecture import ModelConfig, WeightsError, build_model, submodel
from edge.model.dataset import synthetic
from edge.model.pipeline import OUTPUTS
from edge.model.runtime import ModelLoadError, OnnxModel
from edge.preprocess import InputSpec

pytestmark = pytest.mark.integration
SIZE = 128  # the demo size: GAP over 4×4 keeps fp32 round-off under 1e-4 (2×2 does not)
CFG = ModelConfig(
    input_size=SIZE, class_names=("good", "scratch", "dent"), patch_dim=32, head_width=16
)
SPEC = InputSpec(SIZE, "caffe")


def _frames(seed: int, n: int, families: tuple[str, ...] = ("scratch", "dent")) -> Any:
    return synthetic(seed, n, SIZE, families, defect_fraction=0.5)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A calibrated tiny model exported exactly as `linewatch model build` does (body + heads)."""
    import keras

    tmp = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(1)  # one reproducible network, as a build with seed 1 makes
    model = build_model(CFG)
    nominal = np.concatenate(list(_frames(1, 64, ()).batches(SPEC, 32)))
    train.calibrate_batchnorm(model, nominal, batch=32)
    train.fit_projection(model, nominal)
    body = keras.Model(
        model.input,
        {
            "embedding": model.get_layer("embedding").output,
            "patch_features": model.get_layer("patch_projection").output,
        },
    )
    body_proto = export.export_keras(body, tmp / "body.onnx")
    heads_proto = export.export_keras(
        submodel(model, "heads"), tmp / "heads.onnx", input_name="patch_features"
    )
    onnx_path = tmp / cardmod.FP32_NAME
    export.merge(body_proto, heads_proto, "patch_features", OUTPUTS, onnx_path)
    card = cardmod.ModelCard(
        name="t",
        input=cardmod.InputInfo(size=SIZE),
        class_names=CFG.class_names,
        outputs={k: k for k in OUTPUTS},
        thresholds=cardmod.Thresholds(defect=0.5, novelty=1.0),
        patch_dim=CFG.patch_dim,
        files={cardmod.FP32_NAME: cardmod.file_info(onnx_path)},
    )
    cardmod.save_card(card, tmp / cardmod.CARD_NAME)
    return {"model": model, "dir": tmp, "onnx": onnx_path}


def _keras_float64(model: Any) -> Any:
    """The same network and weights evaluated in float64: the exact Keras function."""
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        exact = build_model(CFG)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    exact.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    return exact


def test_keras_and_onnxruntime_agree_in_fp32(built: dict[str, Any]) -> None:
    """The fp32 ONNX file computes the Keras model: within 1e-4 of the Keras function
    evaluated exactly (float64), on every output. Keras' own fp32 run carries float32
    round-off too (measured 8.9e-5 from exact on `embedding`, onnxruntime's 5.5e-5), so the
    two fp32 runs are held to the sum of both budgets (docs/model.md, parity)."""
    x = np.concatenate(list(_frames(2, 6).batches(SPEC, 6)))
    keras_out = built["model"](x, training=False)
    exact = _keras_float64(built["model"])(x.astype(np.float64), training=False)
    ort_out = OnnxModel(built["dir"]).run(x)
    assert set(OUTPUTS) <= set(ort_out)
    for name in OUTPUTS:
        ref = np.asarray(exact[name], np.float64)
        assert ref.dtype == np.float64 and ref.shape == ort_out[name].shape
        assert float(np.abs(ort_out[name] - ref).max()) <= 1e-4, name
        assert float(np.abs(np.asarray(keras_out[name]) - ref).max()) <= 1e-4, name
        assert float(np.abs(np.asarray(keras_out[name]) - ort_out[name]).max()) <= 2e-4, name


def test_output_shapes_and_dynamic_batch(built: dict[str, Any]) -> None:
    m = OnnxModel(built["onnx"])
    assert m.session.get_inputs()[0].name == "image"
    for n in (1, 7):
        x = np.concatenate(list(_frames(3 + n, n).batches(SPEC, n)))
        out = m.run(x)
        assert out["embedding"].shape == (n, 2048)
        assert out["defect_score"].shape == (n,)
        assert out["class_scores"].shape == (n, 3)
        np.testing.assert_allclose(out["class_scores"].sum(1), 1.0, rtol=1e-5)
        assert out["patch_features"].shape[0] == n and out["patch_features"].ndim == 4
    with pytest.raises(ValueError, match="batch must be"):
        m.run(np.zeros((1, SIZE + 1, SIZE, 3), np.float32))


def test_weights_load_from_a_local_file(built: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "mine.weights.h5"
    built["model"].save_weights(str(path))
    again = build_model(CFG, weights=path)
    x = np.concatenate(list(_frames(5, 3).batches(SPEC, 3)))
    a, b = built["model"](x, training=False), again(x, training=False)
    for name in OUTPUTS:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=0, atol=1e-6)
    fresh = build_model(CFG)  # random init differs: the file really was loaded above
    assert not np.allclose(np.asarray(fresh(x)["embedding"]), np.asarray(a["embedding"]))


def test_missing_or_foreign_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.weights\.h5"):
        build_model(CFG, weights=tmp_path / "nope.weights.h5")
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match=r"junk\.weights\.h5"):
        build_model(CFG, weights=junk)


def test_imagenet_weights_offline_raise_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", "/nonexistent-keras-home")
    try:
        build_model(CFG, weights="imagenet")
    except WeightsError as exc:
        assert "offline" in str(exc) or "could not be loaded" in str(exc)
    else:
        pytest.skip("this machine could download the ImageNet weights")


def test_a_tiny_training_run_completes(built: dict[str, Any]) -> None:
    import keras

    feats = keras.Model(built["model"].input, built["model"].get_layer("patch_projection").output)
    ds = _frames(7, 24)
    x = np.concatenate(list(ds.batches(SPEC, 24)))
    pf = np.asarray(feats(x, training=False))
    labels = np.array([CFG.class_names.index(lab) for lab in ds.labels])
    hist = train.train_heads(
        built["model"],
        pf[:16],
        labels[:16],
        pf[16:],
        labels[16:],
        CFG.class_names,
        train.TrainConfig(epochs=2, batch=8, patience=5),
    )
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    assert "val_loss" in hist


def test_missing_or_corrupted_onnx_names_the_file(built: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"absent\.onnx"):
        OnnxModel(tmp_path / "absent.onnx")
    d = tmp_path / "m"
    d.mkdir()
    (d / cardmod.CARD_NAME).write_bytes((built["dir"] / cardmod.CARD_NAME).read_bytes())
    with pytest.raises(ModelLoadError, match=re.escape(str(d / cardmod.FP32_NAME))):
        OnnxModel(d)  # card present, model file missing
    data = built["onnx"].read_bytes()
    (d / cardmod.FP32_NAME).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match=re.escape(str(d / cardmod.FP32_NAME))):
        OnnxModel(d)  # sha256 differs from the card
    with pytest.raises(ModelLoadError, match="corrupted"):
        OnnxModel(d, verify=False)  # onnxruntime itself refuses the truncated file


def test_build_profile_writes_the_contract_and_is_cached(tmp_path: Path) -> None:
    from edge.model.build import config_for, run_build

    cfg = config_for("test", n_train=120, n_test=60, epochs=2)
    out = tmp_path / "demo"
    card = run_build(cfg, out)
    names = {p.name for p in out.iterdir()}
    assert {cardmod.FP32_NAME, cardmod.CARD_NAME, cardmod.BANK_NAME} <= names
    loaded = cardmod.load_card(out)
    assert loaded.serve == cardmod.FP32_NAME and loaded.input.size == 64
    assert loaded.class_names[0] == "good" and "crack" not in loaded.class_names
    for key in ("image_auroc", "novelty_auroc", "family_ari", "good_fpr"):
        assert key in loaded.metrics
    model = OnnxModel(out)
    x = np.concatenate(list(synthetic(9, 2, 64, ()).batches(loaded.input_spec(), 2)))
    assert model.run(x)["patch_features"].shape[-1] == model.load_bank().shape[1]
    again = run_build(cfg, out)  # same inputs: reused, not rebuilt
    assert again["created"] == card["created"]
    _quantize_and_serve(out)


def _quantize_and_serve(model_dir: Path) -> None:
    """`linewatch model quantize`: the decision, its evidence and the served file agree."""
    from edge.model.tools import quantize_model

    info = quantize_model(model_dir, n_test=48)
    for key in ("speedup", "auroc_drop", "novelty_auroc_drop", "novelty_rank_spearman", "reason"):
        assert key in info, key
    card = cardmod.load_card(model_dir)
    int8 = model_dir / cardmod.INT8_NAME
    assert card.quantization["kept"] is info["kept"]
    assert int8.is_file() is info["kept"]
    assert card.serve == (cardmod.INT8_NAME if info["kept"] else cardmod.FP32_NAME)
    if info["kept"]:
        assert info["speedup"] > 1.0 and info["novelty_rank_spearman"] >= 0.95
        assert card.files[cardmod.INT8_NAME].sha256 == cardmod.file_info(int8).sha256
    model = OnnxModel(model_dir)  # the served file loads and matches its recorded hash
    x = np.concatenate(list(synthetic(9, 3, 64, ()).batches(card.input_spec(), 3)))
    assert model.run(x)["embedding"].shape == (3, 2048)
