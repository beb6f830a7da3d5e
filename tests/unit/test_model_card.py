"""The model card: round trip, validation, clear errors naming the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.model.card import (
    CardError,
    InputInfo,
    ModelCard,
    Thresholds,
    file_info,
    load_card,
    save_card,
)
from edge.preprocess import InputSpec

pytestmark = pytest.mark.unit


def _card(**kw: object) -> ModelCard:
    base: dict[str, object] = dict(
        name="demo",
        input=InputInfo(size=128),
        class_names=("good", "scratch", "dent"),
        outputs={"embedding": "[N, 2048]"},
        thresholds=Thresholds(defect=0.7, novelty=12.5),
        patch_dim=128,
        held_out_family="crack",
        metrics={"image_auroc": 0.93},
        recipe={"build_hash": "abc"},
        quantization={"kept": False},
    )
    base.update(kw)
    return ModelCard.model_validate(base)


def test_round_trip(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"abc")
    card = _card(files={"model.onnx": file_info(onnx_file)})
    save_card(card, tmp_path / "model.card.json")
    again = load_card(tmp_path)  # a directory works too
    assert again == card
    assert again.files["model.onnx"].bytes == 3
    assert again.input_spec() == InputSpec(128, "caffe")


def test_good_must_be_class_zero() -> None:
    with pytest.raises(ValueError, match="good"):
        _card(class_names=("scratch", "good"))
    with pytest.raises(ValueError, match="unique"):
        _card(class_names=("good", "dent", "dent"))


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError):
        Thresholds(defect=1.5, novelty=1.0)
    with pytest.raises(ValueError):
        Thresholds(defect=0.5, novelty=0.0)


def test_missing_and_broken_cards_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model.card.json"
    with pytest.raises(CardError, match=re.escape(str(missing))):
        load_card(missing)
    broken = tmp_path / "model.card.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CardError, match=re.escape(str(broken))):
        load_card(broken)
    broken.write_text('{"name": "x"}', encoding="utf-8")
    with pytest.raises(CardError, match="invalid"):
        load_card(broken)
