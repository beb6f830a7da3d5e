"""`linewatch demo`'s model choice and promotion into the served directory (files, no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.demo import CARD, initial_model, promote

pytestmark = pytest.mark.unit


def _model(d: Path, name: str) -> Path:
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes(name.encode() * 100)
    (d / "bank.npy").write_bytes(b"bank " + name.encode())
    (d / CARD).write_text(f'{{"name": "{name}"}}')
    return d


def test_the_best_ready_model_is_chosen(tmp_path: Path) -> None:
    assert initial_model(tmp_path, "quick", "demo") is None
    quick = _model(tmp_path / "quick", "quick")
    assert initial_model(tmp_path, "quick", "demo") == quick
    (tmp_path / "demo").mkdir()  # a build under way has no card yet
    assert initial_model(tmp_path, "quick", "demo") == quick
    (tmp_path / "demo").rmdir()  # the build renames its finished directory into place
    os.replace(_model(tmp_path / ".demo.tmp", "demo"), tmp_path / "demo")
    assert initial_model(tmp_path, "quick", "demo") == tmp_path / "demo"


def test_promotion_copies_the_files_and_writes_the_card_last(tmp_path: Path) -> None:
    serve = tmp_path / "serve"
    assert promote(_model(tmp_path / "quick", "quick"), serve)
    assert (serve / CARD).read_text() == '{"name": "quick"}'
    assert not promote(tmp_path / "quick", serve)  # already served: nothing to do
    before = (serve / CARD).stat().st_mtime_ns
    demo = _model(tmp_path / "demo", "demo")
    assert promote(demo, serve)
    assert (serve / "model.onnx").read_bytes() == (demo / "model.onnx").read_bytes()
    # the card is replaced after every other file: its mtime is the newest
    newest = max((f.stat().st_mtime_ns, f.name) for f in serve.iterdir())
    assert newest[1] == CARD and (serve / CARD).stat().st_mtime_ns >= before
    assert sorted(f.name for f in serve.iterdir()) == ["bank.npy", CARD, "model.onnx"]
