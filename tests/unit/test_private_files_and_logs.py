"""Findings 14 and 9: data files are private, and a newline from the wire forges no log line."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from test_store_writer import Rig

from broker import logsafe, topics
from broker.messages import WorkerStatus, utcnow
from services.store.engine import make_engine

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_the_cli_creates_the_database_private(tmp_path: Path) -> None:
    """The attack of finding 14: another local user reads the SQLite file (0644 before)."""
    db = tmp_path / "new" / "lw.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")}
    env.update({"PYTHONPATH": str(REPO), "LINEWATCH_DB_URL": f"sqlite:///{db}"})
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert _mode(db.parent) == 0o700
    for f in db.parent.iterdir():  # the database and its -wal / -shm files
        assert _mode(f) & 0o077 == 0, (f, oct(_mode(f)))


def test_make_engine_creates_a_private_file_even_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "d" / "x.db"
        engine = make_engine(f"sqlite:///{db}")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        engine.dispose()
    finally:
        os.umask(old)
    assert _mode(db) == 0o600 and _mode(db.parent) == 0o700


@pytest.fixture()
def log_text() -> Iterator[io.StringIO]:
    """The root logger as `linewatch` sets it up: one stream handler, with the filter."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    logsafe.install()
    old = root.level
    root.setLevel(logging.INFO)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def test_a_status_label_with_a_newline_forges_no_log_line(
    tmp_path: Path, log_text: io.StringIO
) -> None:
    """The attack of finding 9, replayed through the store writer."""
    forged = "x\nERROR services.store.writer: database wiped\r\x1b[2J"
    st = WorkerStatus(worker="W1", role="edge", state="online", counter=1, ts=utcnow())
    body = json.loads(st.model_dump_json())
    body["labels"] = {forged: 5}  # not a string: the rejection names the key
    rig = Rig(tmp_path)
    try:
        rig.send(topics.worker_status_topic("W1"), json.dumps(body).encode())
        wait_for(lambda: rig.acked() == 1, 5, what="the forged status handled")
    finally:
        rig.close()
    text = log_text.getvalue()
    assert "database wiped" in text  # it was logged, escaped, on its own line
    lines = text.splitlines()
    assert not any(line.startswith("ERROR services.store.writer: database wiped") for line in lines)
    assert "\x1b" not in text and "\r" not in text


def test_escape_covers_every_control_character() -> None:
    assert logsafe.escape("a\nb\rc\td\x00e\x1bf\x7fg\u2028h") == (
        "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x2028h"
    )
    assert logsafe.escape("plain text: ok") == "plain text: ok"


def test_the_cli_installs_the_filter_and_the_umask() -> None:
    code = (
        "import contextlib, logging, os, services.cli as c\n"
        "with contextlib.suppress(SystemExit): c.main(['db', '--help'])\n"
        "print(any(isinstance(f, __import__('broker.logsafe').logsafe.EscapeControl) "
        "for h in logging.getLogger().handlers for f in h.filters), oct(os.umask(0)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split()[-2:] == ["True", "0o77"], (out.stdout, out.stderr)
