"""`linewatch model promote`: install a retrained candidate where the workers load from, only
when it is not worse than the served model on any family of the held-out history."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.model import card as cardmod


class PromoteError(ValueError):
    """A candidate that may not be installed; the message says why."""


@dataclass(frozen=True)
class Worse:
    """One figure on which the candidate is worse than the served model."""

    family: str
    figure: str
    candidate: float | None
    served: float | None

    def __str__(self) -> str:
        return f"{self.family} {self.figure} {self.candidate} < {self.served}"


def _lower(cand: float | None, served: float | None, tol: float) -> bool:
    if served is None:
        return False  # nothing to lose
    return cand is None or cand < served - tol


def worse_families(history: dict[str, Any], tolerance: float = 0.0) -> list[Worse]:
    """Every (family, figure) where the candidate is worse than the served model.

    Per defect family: its AUROC against the held-out good frames (the ranking, threshold
    free) must not be lower; its recall at the model's own thresholds must not be lower
    either, unless the candidate also has fewer false alarms on the good frames (a trade
    of operating point, not a worse model). Good frames (``good``): the false-positive rate
    must not be higher, unless the candidate catches more of some family in exchange."""
    cand, served = history["candidate"], history["served"]
    c_fpr, s_fpr = cand.get("good_fpr"), served.get("good_fpr")
    fewer_alarms = c_fpr is not None and s_fpr is not None and c_fpr < s_fpr - tolerance
    out: list[Worse] = []
    c_auc, s_auc = cand.get("family_auroc") or {}, served.get("family_auroc") or {}
    for fam in sorted(set(c_auc) | set(s_auc)):
        if _lower(c_auc.get(fam), s_auc.get(fam), tolerance):
            out.append(Worse(fam, "family_auroc", c_auc.get(fam), s_auc.get(fam)))
    c_rec, s_rec = cand.get("per_family_recall") or {}, served.get("per_family_recall") or {}
    for fam in sorted(set(c_rec) | set(s_rec)):
        if not fewer_alarms and _lower(c_rec.get(fam), s_rec.get(fam), tolerance):
            out.append(Worse(fam, "per_family_recall", c_rec.get(fam), s_rec.get(fam)))
    more_caught = any(_lower(s_rec.get(f), c_rec.get(f), tolerance) for f in c_rec)
    if s_fpr is not None and (c_fpr is None or c_fpr > s_fpr + tolerance) and not more_caught:
        out.append(Worse("good", "good_fpr (higher)", c_fpr, s_fpr))
    return out


def install(src: Path, dst: Path) -> bool:
    """Make ``dst`` serve ``src``: files copied in one by one (each replaced atomically), the
    card last, the protocol the workers' hot switch watches for (edge/modelswitch.py; the
    demo's promote does the same). False when ``dst`` already serves that card."""
    card = (src / cardmod.CARD_NAME).read_bytes()
    if (dst / cardmod.CARD_NAME).is_file() and (dst / cardmod.CARD_NAME).read_bytes() == card:
        return False
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name != cardmod.CARD_NAME:
            tmp = dst / f".{f.name}.new"
            shutil.copyfile(f, tmp)
            os.replace(tmp, dst / f.name)
    tmp = dst / f".{cardmod.CARD_NAME}.new"
    tmp.write_bytes(card)
    os.replace(tmp, dst / cardmod.CARD_NAME)
    return True


def promote(
    candidate: Path, served: Path, *, force: bool = False, tolerance: float = 0.0
) -> dict[str, Any]:
    """Check the candidate's card against the served model and install it; PromoteError
    (naming the families that got worse) when it may not be installed."""
    card = cardmod.load_card(candidate)
    history = card.metrics.get("history")
    if not isinstance(history, dict) or "served" not in history:
        raise PromoteError(
            f"{candidate} has no held-out comparison in its card "
            "(build it with `linewatch model train --from-history`)"
        )
    worse = worse_families(history, tolerance)
    served_card = served / cardmod.CARD_NAME
    compared = history.get("served_model", {}).get("card_sha256")
    current = cardmod.sha256_file(served_card) if served_card.is_file() else None
    if current == cardmod.sha256_file(candidate / cardmod.CARD_NAME):
        return {"candidate": str(candidate), "served": str(served), "installed": False}
    changed = current is not None and current != compared
    if not force:
        if worse:
            fams = sorted({w.family for w in worse})
            raise PromoteError(
                f"candidate {candidate} is worse than the served model on "
                f"{', '.join(fams)}: " + "; ".join(str(w) for w in worse)
            )
        if changed:
            raise PromoteError(
                f"{served} no longer serves the model the candidate was compared with; "
                "retrain from history against it (or --force)"
            )
    installed = install(candidate, served)
    return {
        "candidate": str(candidate),
        "served": str(served),
        "installed": installed,
        "forced": force and bool(worse or changed),
        "worse": [str(w) for w in worse],
    }
