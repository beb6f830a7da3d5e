"""Serving a built model with onnxruntime: load .onnx + card, check it, run batches."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.model.card import CARD_NAME, CardError, ModelCard, load_card, sha256_file
from edge.model.novelty import BankError, check_bank

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model file that is missing, corrupted or does not match its card (names the file)."""


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def session_options(intra_threads: int | None = None) -> ort.SessionOptions:
    """Sequential execution, full graph optimisation, intra-op threads = cores available."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_threads or available_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def _resolve(path: Path) -> tuple[Path, ModelCard]:
    """(onnx file, card) from a model directory (serves card.serve) or an .onnx path."""
    if path.is_dir():
        card = load_card(path / CARD_NAME)
        return path / card.serve, card
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist (run `linewatch model build`)")
    return path, load_card(path.parent / CARD_NAME)


class OnnxModel:
    """An onnxruntime session over one model file, with its card.

    ``path``: a model directory (the card's ``serve`` file is loaded) or an .onnx file whose
    card sits beside it. ``verify``: compare the file's sha256 with the card's record.
    """

    def __init__(
        self, path: Path | str, *, intra_threads: int | None = None, verify: bool = True
    ) -> None:
        p = Path(path)
        try:
            self.path, self.card = _resolve(p)
        except CardError as exc:
            raise ModelLoadError(str(exc)) from None
        if not self.path.is_file():
            raise ModelLoadError(
                f"model file {self.path} does not exist (run `linewatch model build`)"
            )
        if verify:
            self._verify()
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options(intra_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/...
            raise ModelLoadError(
                f"model file {self.path} cannot be loaded by onnxruntime "
                f"(corrupted or not an ONNX model): {exc}"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_spec = self.card.input_spec()
        log.info(
            "loaded model %s (%s outputs, %s threads)",
            self.path,
            len(self.output_names),
            intra_threads or available_cores(),
        )

    def _verify(self) -> None:
        rec = self.card.files.get(self.path.name)
        if rec is None:
            return
        digest = sha256_file(self.path)
        if digest != rec.sha256:
            raise ModelLoadError(
                f"model file {self.path} does not match its card "
                f"(sha256 {digest[:12]}… ≠ {rec.sha256[:12]}…): "
                "corrupted or replaced"
            )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for a preprocessed float32 NHWC batch."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        size = self.input_spec.size
        if x.ndim != 4 or x.shape[1:] != (size, size, 3):
            raise ValueError(f"batch must be [N, {size}, {size}, 3], got {x.shape}")
        outs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))

    def load_bank(self) -> np.ndarray:
        """The model's default nominal bank (used by cameras without their own)."""
        p = self.path.parent / self.card.bank
        try:
            bank = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            raise ModelLoadError(f"nominal bank {p} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"nominal bank {p} cannot be read: {exc}") from None
        try:
            return check_bank(bank, self.card.patch_dim)
        except BankError as exc:
            raise ModelLoadError(f"nominal bank {p}: {exc}") from None


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return
