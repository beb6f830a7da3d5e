"""Test data for the edge tests: a TINY ONNX model with the real model's input/output names.

Input ``image`` float32 NHWC [N, 32, 32, 3] (``unit`` normalisation: RGB / 255).
- ``defect_score`` = sigmoid(50 · (mean(R) − mean(G) − 0.1)): a red area makes a defect.
- ``class_scores`` = softmax over (good, scratch, dent) of the channel means.
- ``embedding`` = a linear map of the channel means (8-d).
- ``patch_features`` = 8×8 average pools [N, 4, 4, 3]: a blue corner is far from the grey
  nominal bank, i.e. an anomaly the head does not know.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

SIZE = 32
CLASSES = ("good", "scratch", "dent")
DEFECT_T = 0.5
NOVELTY_T = 0.2


def _model() -> onnx.ModelProto:
    w_emb = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    w_cls = np.array([[-4, 8, 1], [4, -8, 1], [0, 0, 0]], np.float32)  # R vs G
    inits = [
        numpy_helper.from_array(w_emb, "w_emb"),
        numpy_helper.from_array(w_cls, "w_cls"),
        numpy_helper.from_array(np.array([[1.0], [-1.0], [0.0]], np.float32), "w_diff"),
        numpy_helper.from_array(np.array([0.1], np.float32), "offset"),
        numpy_helper.from_array(np.array([50.0], np.float32), "gain"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
    ]
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["image"], ["means"], axes=[1, 2], keepdims=0),
        n("MatMul", ["means", "w_emb"], ["embedding"]),
        n("MatMul", ["means", "w_diff"], ["diff"]),
        n("Sub", ["diff", "offset"], ["centred"]),
        n("Mul", ["centred", "gain"], ["logit"]),
        n("Sigmoid", ["logit"], ["prob"]),
        n("Reshape", ["prob", "flat"], ["defect_score"]),
        n("MatMul", ["means", "w_cls"], ["cls_logits"]),
        n("Softmax", ["cls_logits"], ["class_scores"], axis=1),
        n("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        n("AveragePool", ["nchw"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        n("Transpose", ["pooled"], ["patch_features"], perm=[0, 2, 3, 1]),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", f, ["N", SIZE, SIZE, 3])],
        [
            helper.make_tensor_value_info("embedding", f, ["N", 8]),
            helper.make_tensor_value_info("defect_score", f, ["N"]),
            helper.make_tensor_value_info("class_scores", f, ["N", 3]),
            helper.make_tensor_value_info("patch_features", f, ["N", 4, 4, 3]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build(model_dir: Path, *, bank: bool = True) -> Path:
    """Write model.onnx, model.card.json and (optionally) nominal_bank.npy into ``model_dir``."""
    from edge.model.card import InputInfo, ModelCard, Thresholds, file_info, save_card

    model_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(_model(), str(model_dir / "model.onnx"))
    if bank:
        rng = np.random.default_rng(1)
        grey = 0.5 + rng.uniform(-0.04, 0.04, (64, 1)).astype(np.float32)
        np.save(model_dir / "nominal_bank.npy", np.repeat(grey, 3, axis=1))
    card = ModelCard(
        name="tiny-test",
        input=InputInfo(size=SIZE, normalisation="unit"),
        class_names=CLASSES,
        outputs={
            "embedding": "[N,8]",
            "defect_score": "[N]",
            "class_scores": "[N,3]",
            "patch_features": "[N,4,4,3]",
        },
        thresholds=Thresholds(defect=DEFECT_T, novelty=NOVELTY_T),
        patch_dim=3,
        files={"model.onnx": file_info(model_dir / "model.onnx")},
    )
    save_card(card, model_dir / "model.card.json")
    return model_dir


def frame(kind: str = "good", seed: int = 0, fmt: str = "PNG", size: int = 64) -> bytes:
    """An encoded frame: ``good`` (grey), ``defect`` (red square), ``anomaly`` (blue corner)."""
    rng = np.random.default_rng(seed)
    img = np.clip(128 + rng.normal(0, 3, (size, size, 3)), 0, 255)
    if kind == "defect":
        img[: size // 2, : size // 2] = (255, 0, 0)
    elif kind == "anomaly":
        img[: size // 4, : size // 4] = (0, 0, 255)
    elif kind != "good":
        raise ValueError(kind)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()
