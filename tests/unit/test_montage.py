"""`linewatch model montage` writes the part type × family grid a person can check by eye."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from edge.model.cli import main
from edge.model.synthetic import DEFECT_FAMILIES, PART_TYPES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("tier", ["standard", "faint"])
def test_montage_writes_a_png_grid(
    tmp_path: Path, tier: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"{tier}.png"
    assert main(["montage", "--tier", tier, "--out", str(out), "--size", "64"]) == 0
    assert str(out) in capsys.readouterr().out
    img = Image.open(out)
    assert img.format == "PNG"
    cols, rows = 1 + len(DEFECT_FAMILIES), len(PART_TYPES)
    assert img.size[0] >= cols * 64 and img.size[1] >= rows * 2 * 64


def test_montage_refuses_an_unknown_tier(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["montage", "--tier", "loud", "--out", str(tmp_path / "x.png")])
