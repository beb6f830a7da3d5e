"""`linewatch up`'s calm terminal: the figures from SQL, the status block, per-child log files."""

from __future__ import annotations

import io
import logging
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.store import schema as s
from services.store.vitals import Vitals, VitalsReader, read_vitals
from services.upplan import Component
from services.upproc import Child, Supervisor
from services.upstatus import Board, BoardHandler, ProcState, block_lines, plain_line
from tests.helpers import wait_for

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
VITALS = Vitals(
    frames_per_s=19.5,
    frames_total=1200,
    alerts_open=3,
    families=2,
    workers_online=1,
    workers_known=2,
    models=("demo-abc123",),
)
PROCS = [ProcState("store", True, 0), ProcState("edge-W1", False, 2), ProcState("feed", True, 0)]


def _frame(i: int, at: datetime) -> dict[str, object]:
    return dict(
        frame_key=f"k{i}", site="p", line="l", station="s", camera="c", stream="p/l/s/camera/c",
        seq=i, epoch=0, received_at=at, decided_at=at, verdict="ok", defect_score=0.1,
        novelty_score=0.1, predicted_class="good", model_version="m1", latency_ms=3.0,
        worker="W1",
    )  # fmt: skip


def test_vitals_come_from_indexed_counts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    engine = sa.create_engine(url)
    s.Base.metadata.create_all(engine)
    alert = dict(kind="defect", severity="warning", first_seen=NOW, last_seen=NOW, site="p",
                 line="l", station="s")  # fmt: skip
    worker = dict(role="edge", counter=1, last_seen=NOW)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(s.T_FRAMES), [_frame(i, NOW - timedelta(seconds=i)) for i in range(30)]
        )
        conn.execute(sa.insert(s.T_ALERTS), [
            {**alert, "dedup_key": "a", "status": "active"},
            {**alert, "dedup_key": "b", "status": "acknowledged"},
            {**alert, "dedup_key": "c", "status": "resolved"},
        ])  # fmt: skip
        fam = dict(name="f", first_seen=NOW, last_seen=NOW, updated_at=NOW)
        conn.execute(sa.insert(s.T_FAMILIES), [
            {**fam, "family": "F1", "status": "active"},
            {**fam, "family": "F2", "status": "merged"},
        ])  # fmt: skip
        conn.execute(sa.insert(s.T_WORKERS), [
            {**worker, "worker": "W1", "state": "online", "model_version": "m2"},
            {**worker, "worker": "W2", "state": "offline", "model_version": "m1"},
            {**worker, "role": "store", "worker": "st", "state": "online", "model_version": ""},
        ])  # fmt: skip
        v = read_vitals(conn, window_s=10.0, now=NOW)
    assert v == Vitals(1.1, 30, 2, 1, 1, 2, ("m2",))  # frames at 0..10 s ago: 11 in 10 s
    engine.dispose()
    reader = VitalsReader(f"sqlite:///{tmp_path / 'empty.db'}")
    assert reader.read() is None and reader.error  # no schema yet: a note, not a crash
    reader.close()


def test_block_and_plain_line_show_every_figure() -> None:
    lines = block_lines("http://127.0.0.1:8080/", VITALS, PROCS, Path("var/log"))
    text = "\n".join(lines)
    for part in ("http://127.0.0.1:8080/", "19.5/s", "1200 stored", "3 open", "families  2",
                 "1 online of 2", "demo-abc123", "2/3 running (down: edge-W1)",
                 "restarts: edge-W1 x2", "var/log/<component>.log"):  # fmt: skip
        assert part in text, part
    waiting = "\n".join(block_lines(None, None, PROCS, Path("v"), "OperationalError: no table"))
    assert "waiting for the feed" in waiting and "no table" in waiting
    line = plain_line("http://h/", VITALS, PROCS)
    assert "\n" not in line and "frames 19.5/s" in line and "model demo-abc123" in line


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_board_redraws_in_place_and_prints_news_above_it() -> None:
    out = FakeTTY()
    url: list[str | None] = [None]
    board = Board(out, True, Path("var/log"), lambda: PROCS, lambda: url[0], lambda: VITALS)
    board.refresh()
    first = out.getvalue()
    assert "\x1b[J" not in first and "19.5/s" in first  # nothing to erase yet
    n = len(first.splitlines())
    url[0] = "http://127.0.0.1:8080/"
    record = logging.makeLogRecord({"msg": "edge-W1 exited with status 1", "levelno": 30})
    BoardHandler(board).emit(record)
    rest = out.getvalue()[len(first) :]
    assert rest.startswith(f"\x1b[{n}F\x1b[J")  # back to the block's top, cleared
    after = rest.split("\x1b[J", 1)[1]
    assert after.index("! edge-W1 exited") < after.index("LineWatch  http://127.0.0.1:8080/")
    board.close()
    board.say("  ! feed did not stop within 10s: SIGKILL")  # shutdown news: no block again
    assert out.getvalue().endswith("SIGKILL\n")
    plain = io.StringIO()
    Board(plain, False, Path("v"), lambda: PROCS, lambda: None, lambda: VITALS).refresh()
    assert plain.getvalue().startswith("up: page -") and "\x1b" not in plain.getvalue()


def test_child_output_goes_to_its_log_file_appended(tmp_path: Path) -> None:
    code = "import sys; print('OUT' + 'PUT'); print('ERR' + 'OR', file=sys.stderr)"
    child = Child(Component("probe", argv=(sys.executable, "-c", code)))
    for _ in range(2):
        child.spawn({}, tmp_path / "log")
        assert child.proc is not None
        assert child.proc.wait(timeout=30) == 0
    text = wait_for(lambda: (tmp_path / "log" / "probe.log").read_text(), 5, what="log")
    assert text.count("OUTPUT") == 2 and text.count("ERROR") == 2
    assert text.count("linewatch up: starting") == 2


def test_a_component_that_finishes_is_not_restarted(tmp_path: Path) -> None:
    done = Child(Component("sim", argv=(sys.executable, "-c", "pass"), finishes=True))
    crash = Child(Component("svc", argv=(sys.executable, "-c", "raise SystemExit(0)")))
    sup = Supervisor([done, crash], {}, restart=True, stop_timeout=5, log_dir=tmp_path)
    assert sup.spawn(done) and sup.spawn(crash)
    runner = threading.Thread(target=sup.run)
    runner.start()
    try:
        wait_for(lambda: done.exit_codes and len(crash.exit_codes) >= 2, 30, what="exits")
    finally:
        sup.stopping.set()
        runner.join(timeout=30)
    assert done.exit_codes == [0] and done.restart_at is None  # finished, left alone
    assert (tmp_path / "sim.log").read_text().count("starting") == 1
