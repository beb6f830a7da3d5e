"""`linewatch edge` command line: help, invalid settings, a missing model named."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import SettingsError
from edge.cli import main

pytestmark = pytest.mark.unit


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--streams" in out and "--model-dir" in out and "--id" in out


def test_invalid_settings_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        main(["--id", "bad id!", "--streams", "only/three/parts"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "worker_id" in err and "streams" in err


def test_missing_model_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEWATCH_DATA_DIR", str(tmp_path))
    assert main(["--id", "W1", "--model-dir", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
