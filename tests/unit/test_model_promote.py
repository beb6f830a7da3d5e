"""`linewatch model promote`: the per-family rule, the refusal (exit 1, naming the families),
and the install the workers' hot switch watches for (files first, card last)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import edge_tinymodel as tiny
import pytest

from edge.model import card as cardmod
from edge.model.cli import main
from edge.model.promote import PromoteError, promote, worse_families

pytestmark = pytest.mark.unit


def figures(auroc: dict[str, float | None], recall: dict[str, float], fpr: float) -> dict:
    return {"family_auroc": auroc, "per_family_recall": recall, "good_fpr": fpr}


SERVED = figures({"scratch": 0.9, "dent": 0.8}, {"scratch": 0.75, "dent": 0.5}, 0.02)


def test_rule_flags_each_family_and_figure_that_got_worse() -> None:
    same = {"candidate": SERVED, "served": SERVED}
    assert worse_families(same) == []
    better = figures({"scratch": 0.95, "dent": 0.8}, {"scratch": 0.8, "dent": 0.5}, 0.01)
    assert worse_families({"candidate": better, "served": SERVED}) == []
    dent_auroc = figures({"scratch": 0.99, "dent": 0.79}, {"scratch": 1.0, "dent": 0.5}, 0.0)
    [w] = worse_families({"candidate": dent_auroc, "served": SERVED})
    assert (w.family, w.figure) == ("dent", "family_auroc")
    assert worse_families({"candidate": dent_auroc, "served": SERVED}, tolerance=0.02) == []
    mixed = figures({"scratch": 0.9}, {"scratch": 0.5, "dent": 0.5}, 0.05)
    got = {(w.family, w.figure) for w in worse_families({"candidate": mixed, "served": SERVED})}
    assert got == {
        ("dent", "family_auroc"),  # no figure at all: worse than one
        ("scratch", "per_family_recall"),
        ("good", "good_fpr (higher)"),
    }
    # an operating-point trade is not a worse model: the ranking (AUROC) decides
    fewer_alarms = figures(SERVED["family_auroc"], {"scratch": 0.6, "dent": 0.4}, 0.01)
    assert worse_families({"candidate": fewer_alarms, "served": SERVED}) == []
    more_caught = figures(SERVED["family_auroc"], {"scratch": 0.8, "dent": 0.5}, 0.04)
    assert worse_families({"candidate": more_caught, "served": SERVED}) == []
    new_family = figures(
        {"scratch": 0.9, "dent": 0.8, "hole": 0.7}, SERVED["per_family_recall"], 0.02
    )
    assert worse_families({"candidate": new_family, "served": SERVED}) == []


def _models(tmp: Path, candidate: dict[str, Any]) -> tuple[Path, Path]:
    served = tiny.build(tmp / "served")
    cand = tiny.build(tmp / "cand")
    card = cardmod.load_card(cand)
    history = {
        "candidate": candidate,
        "served": SERVED,
        "served_model": {"card_sha256": cardmod.sha256_file(served / cardmod.CARD_NAME)},
    }
    card = card.model_copy(update={"name": "candidate", "metrics": {"history": history}})
    cardmod.save_card(card, cand / cardmod.CARD_NAME)
    return cand, served


def test_promote_refuses_a_candidate_worse_on_one_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worse = figures({"scratch": 0.95, "dent": 0.7}, {"scratch": 0.9, "dent": 0.5}, 0.0)
    cand, served = _models(tmp_path, worse)
    before = (served / cardmod.CARD_NAME).read_bytes()
    assert main(["promote", str(cand), "--to", str(served)]) == 1
    err = capsys.readouterr().err
    assert "worse than the served model on dent" in err and "scratch" not in err
    assert (served / cardmod.CARD_NAME).read_bytes() == before  # nothing installed
    forced = promote(cand, served, force=True)
    assert forced["installed"] and forced["forced"] and forced["worse"]
    assert cardmod.load_card(served).name == "candidate"


def test_promote_installs_a_candidate_not_worse_anywhere(tmp_path: Path) -> None:
    cand, served = _models(tmp_path, SERVED)
    assert main(["promote", str(cand), "--to", str(served)]) == 0
    assert (served / cardmod.CARD_NAME).read_bytes() == (cand / cardmod.CARD_NAME).read_bytes()
    assert cardmod.load_card(served).name == "candidate"
    assert not list(served.glob(".*.new"))  # every file replaced atomically
    assert promote(cand, served)["installed"] is False  # already served


def test_promote_refuses_what_it_cannot_judge(tmp_path: Path) -> None:
    cand, served = _models(tmp_path, SERVED)
    (served / "model.onnx").touch()
    other = cardmod.load_card(served).model_copy(update={"name": "replaced-meanwhile"})
    cardmod.save_card(other, served / cardmod.CARD_NAME)
    with pytest.raises(PromoteError, match="no longer serves the model"):
        promote(cand, served)
    plain = tiny.build(tmp_path / "plain")
    with pytest.raises(PromoteError, match="no held-out comparison"):
        promote(plain, served)
