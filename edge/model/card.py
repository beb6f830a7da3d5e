"""The model card: a JSON file beside the .onnx saying how to feed, serve and trust the model."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.preprocess import InputSpec

CARD_NAME = "model.card.json"
FP32_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
BANK_NAME = "nominal_bank.npy"


class CardError(ValueError):
    """A model card that is missing, unreadable or invalid; the message names the file."""


class InputInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "image"
    size: int = Field(ge=8, le=4096)
    layout: str = "NHWC"
    dtype: str = "float32"
    colour_order: str = "RGB"  # of the decoded image handed to edge/preprocess.py
    tensor_channel_order: str = "BGR"  # of the tensor after normalisation ("caffe": BGR)
    normalisation: str = "caffe"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    defect: float = Field(gt=0.0, lt=1.0)
    novelty: float = Field(gt=0.0)


class FileInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    bytes: int = Field(ge=0)


class ModelCard(BaseModel):
    """Everything needed to feed, serve and judge one built model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    name: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    serve: str = FP32_NAME
    input: InputInfo
    class_names: tuple[str, ...]
    outputs: dict[str, str]
    thresholds: Thresholds
    bank: str = BANK_NAME
    # Per-part-type variation models (file names by part type); when present, the novelty
    # score and thresholds.novelty are the variation score's (edge.model.variation).
    variation: dict[str, str] = Field(default_factory=dict)
    # False when the supervised defect head did not separate defects on the validation
    # split: the runtime then serves defect_score 0 and decisions rest on the novelty score.
    defect_head: bool = True
    # The family descriptor's projection (edge/model/families.py), when the build made one.
    families: str | None = None
    patch_dim: int = Field(ge=1)
    held_out_family: str | None = None
    weights_source: str = "none"
    recipe: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileInfo] = Field(default_factory=dict)
    build_seconds: float = 0.0

    @field_validator("class_names")
    @classmethod
    def _good_first(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or v[0] != "good":
            raise ValueError("class_names must start with 'good' (index 0)")
        if len(set(v)) != len(v):
            raise ValueError("class_names must be unique")
        return v

    def input_spec(self) -> InputSpec:
        """The preprocessing spec the edge worker and training share."""
        i = self.input
        return InputSpec(size=i.size, mode=i.normalisation, mean=i.mean, std=i.std)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_info(path: Path) -> FileInfo:
    return FileInfo(sha256=sha256_file(path), bytes=path.stat().st_size)


def save_card(card: ModelCard, path: Path) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_card(path: Path | str) -> ModelCard:
    """Read and validate a card; CardError names the file on any problem."""
    p = Path(path)
    if p.is_dir():
        p = p / CARD_NAME
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError(f"model card {p} does not exist (run `linewatch model build`)") from None
    except OSError as exc:
        raise CardError(f"model card {p} cannot be read: {exc}") from None
    try:
        return ModelCard.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise CardError(f"model card {p} is invalid: {exc}") from None
