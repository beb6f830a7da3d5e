"""The `linewatch` entry point: help lists every command, exit codes 2 and 3, bad settings."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import CommonSettings, load_settings
from services import cli

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "broker",
    "edge",
    "store",
    "cluster",
    "dispatch",
    "feed",
    "sim",
    "up",
    "model",
    "db",
    "demo",
}
BAD_ENV = {"LINEWATCH_KEEPALIVE_S": "abc", "LINEWATCH_MQTT_URL": "http://x"}


def _linewatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("flag", [[], ["--help"], ["-h"], ["help"]])
def test_help_lists_every_subcommand(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(flag) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.split("commands:")[1].splitlines() if line.strip()}
    assert listed >= EXPECTED
    assert set(cli.COMMANDS) == EXPECTED
    assert "LINEWATCH_CONFIG" in out


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "linewatch"  # installed by pyproject's [scripts]
    proc = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for name in EXPECTED:
        assert f"  {name}" in proc.stdout


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err
    assert "usage: linewatch" in err


def test_missing_part_exits_3_with_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = {**cli.COMMANDS, "later": ("services.part_of_a_later_issue", "not built yet")}
    monkeypatch.setattr(cli, "COMMANDS", table)
    assert cli.resolve("later") is None
    assert cli.main(["later", "--flag"]) == 3
    assert "linewatch later: not yet available in this build" in capsys.readouterr().err


def _module_missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def test_commands_not_built_yet_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    # find_spec, not import: available parts (TensorFlow, onnxruntime) stay unloaded here
    for name, (module, _) in cli.COMMANDS.items():
        if _module_missing(module):
            assert cli.main([name]) == 3
            assert f"linewatch {name}: not yet available" in capsys.readouterr().err


def test_load_settings_prints_every_error_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in BAD_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LINEWATCH_CONFIG", raising=False)
    with pytest.raises(SystemExit) as exc:
        load_settings(CommonSettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid settings (2 errors)" in err
    assert "LINEWATCH_KEEPALIVE_S" in err
    assert "LINEWATCH_MQTT_URL" in err


def test_linewatch_up_rejects_invalid_settings_before_starting_anything() -> None:
    proc = _linewatch("up", "--no-restart", env=BAD_ENV)
    assert proc.returncode == 2, proc.stderr
    assert "LINEWATCH_KEEPALIVE_S" in proc.stderr
    assert "LINEWATCH_MQTT_URL" in proc.stderr
    assert "process(es) running" not in proc.stdout


def test_linewatch_up_bad_toml_and_missing_config_exit_2(tmp_path: Path) -> None:
    missing = _linewatch("up", env={"LINEWATCH_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    toml = tmp_path / "lw.toml"
    toml.write_text('keepalive_s = 0\ndb_url = "not a url"\n')
    bad = _linewatch("up", env={"LINEWATCH_CONFIG": str(toml)})
    assert bad.returncode == 2
    assert "keepalive_s" in bad.stderr
    assert "db_url" in bad.stderr


def test_linewatch_up_unknown_component_exits_2() -> None:
    proc = _linewatch("up", "--only", "nonesuch")
    assert proc.returncode == 2
    assert "unknown component(s): nonesuch" in proc.stderr
