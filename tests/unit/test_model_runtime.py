"""OnnxModel: loads a model directory or file with its card; clear errors naming the file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.model import card as cardmod
from edge.model.runtime import ModelLoadError, OnnxModel, session_options

pytestmark = pytest.mark.unit
SIZE = 8


def _tiny_model(path: Path) -> None:
    """image [N,8,8,3] → patch_features (identity) and embedding (mean over H, W)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])
    pf = helper.make_tensor_value_info("patch_features", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])
    emb = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    nodes = [
        helper.make_node("Identity", ["image"], ["patch_features"]),
        helper.make_node("ReduceMean", ["image", "axes"], ["embedding"], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [pf, emb], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, str(path))


def _dir(tmp_path: Path, bank: np.ndarray | None = None) -> Path:
    d = tmp_path / "demo"
    d.mkdir()
    _tiny_model(d / cardmod.FP32_NAME)
    np.save(d / cardmod.BANK_NAME, np.ones((4, 3), np.float32) if bank is None else bank)
    card = cardmod.ModelCard(
        name="tiny",
        input=cardmod.InputInfo(size=SIZE),
        class_names=("good", "dent"),
        outputs={"embedding": "[N, 3]"},
        thresholds=cardmod.Thresholds(defect=0.5, novelty=1.0),
        patch_dim=3,
        files={cardmod.FP32_NAME: cardmod.file_info(d / cardmod.FP32_NAME)},
    )
    cardmod.save_card(card, d / cardmod.CARD_NAME)
    return d


def test_runs_a_batch_from_a_directory_or_a_file(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    for target in (d, d / cardmod.FP32_NAME):
        m = OnnxModel(target, intra_threads=1)
        x = np.random.default_rng(0).normal(size=(7, SIZE, SIZE, 3)).astype(np.float32)
        out = m.run(x)
        np.testing.assert_allclose(out["embedding"], x.mean(axis=(1, 2)), rtol=1e-5)
        assert out["patch_features"].shape == (7, SIZE, SIZE, 3)
        assert m.input_spec.size == SIZE
        assert m.load_bank().shape == (4, 3)


def test_missing_model_file_and_missing_card_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"absent\.onnx"):
        OnnxModel(tmp_path / "absent.onnx")
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path / cardmod.CARD_NAME))):
        OnnxModel(tmp_path)
    d = _dir(tmp_path)
    (d / cardmod.FP32_NAME).unlink()
    with pytest.raises(ModelLoadError, match=re.escape(str(d / cardmod.FP32_NAME))):
        OnnxModel(d)


def test_corrupted_model_is_refused_with_its_name(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    path = d / cardmod.FP32_NAME
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelLoadError, match=re.escape(str(path)) + ".*does not match its card"):
        OnnxModel(d)
    with pytest.raises(ModelLoadError, match=re.escape(str(path)) + ".*corrupted"):
        OnnxModel(d, verify=False)


def test_bad_bank_and_bad_batch(tmp_path: Path) -> None:
    d = _dir(tmp_path, bank=np.ones((4, 5), np.float32))
    m = OnnxModel(d)
    with pytest.raises(ModelLoadError, match=r"nominal_bank\.npy.*dimension"):
        m.load_bank()
    (d / cardmod.BANK_NAME).write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=r"nominal_bank\.npy"):
        m.load_bank()
    with pytest.raises(ValueError, match="batch must be"):
        m.run(np.zeros((1, SIZE, SIZE, 4), np.float32))


def test_session_threads_default_to_available_cores() -> None:
    assert session_options().intra_op_num_threads >= 1
    assert session_options(3).intra_op_num_threads == 3
