"""Keras → ONNX through tf2onnx (tf.function route, Keras 3 safe), and merging graph parts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import keras
import onnx
import tensorflow as tf
import tf2onnx
from onnx import compose

from edge.model.runtime import release_freed_memory

log = logging.getLogger(__name__)
OPSET = 17


class ExportError(RuntimeError):
    """tf2onnx could not convert the model, or the result failed the ONNX checker."""


def export_keras(
    model: keras.Model, path: Path, input_name: str = "image", opset: int = OPSET
) -> onnx.ModelProto:
    """Write ``model`` (one input, dict outputs) as ONNX with a dynamic batch axis.

    ``tf2onnx.convert.from_keras`` does not handle Keras 3 models; converting a
    ``tf.function`` with an explicit input signature does, and keeps the output names.
    """
    shape = (None, *tuple(model.inputs[0].shape[1:]))
    spec = (tf.TensorSpec(shape, tf.float32, name=input_name),)

    @tf.function(input_signature=spec)
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(x, training=False)
        return {k: tf.identity(v, name=k) for k, v in out.items()}

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    except Exception as exc:
        raise ExportError(f"tf2onnx failed to convert {model.name}: {exc}") from exc
    _rename_batch(proto)
    check_and_save(proto, path)
    # tracing and freezing a ResNet-50 leaves several GB of freed heap resident (a quick
    # build peaked at 14 GB); hand it back so the build's later steps do not stack on it
    release_freed_memory()
    return proto


def _rename_batch(proto: onnx.ModelProto) -> None:
    """Name the dynamic first axis ``N`` on every input and output (tf2onnx says unk__123)."""
    for vi in [*proto.graph.input, *proto.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"


def _dedupe_opsets(proto: onnx.ModelProto) -> None:
    """One opset_import per domain (compose repeats them; the quantizer refuses that)."""
    best: dict[str, int] = {}
    for op in proto.opset_import:
        dom = "" if op.domain == "ai.onnx" else op.domain
        best[dom] = max(best.get(dom, 0), op.version)
    del proto.opset_import[:]
    for dom, ver in best.items():
        proto.opset_import.append(onnx.helper.make_opsetid(dom, ver))


def check_and_save(proto: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported graph for {path} fails the ONNX checker: {exc}") from exc
    tmp = path.with_suffix(".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)


def merge(
    body: onnx.ModelProto, heads: onnx.ModelProto, link: str, outputs: Sequence[str], path: Path
) -> onnx.ModelProto:
    """One graph: ``body``'s output ``link`` feeds ``heads``' input of the same name."""
    heads = compose.add_prefix(heads, "heads/", rename_inputs=False, rename_outputs=False)
    merged = compose.merge_models(
        body, heads, io_map=[(link, link)], outputs=list(outputs), name="linewatch"
    )
    _rename_batch(merged)
    _dedupe_opsets(merged)
    check_and_save(merged, path)
    return merged
