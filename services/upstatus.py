"""`linewatch up`'s calm terminal: one status block redrawn in place, or a periodic plain line."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from services.store.vitals import Vitals, VitalsReader
from services.upproc import Child

CLEAR_LINE = "\x1b[2K"


@dataclass(frozen=True)
class ProcState:
    """One supervised process as the status block shows it."""

    name: str
    running: bool
    restarts: int


def _procs(procs: Sequence[ProcState]) -> str:
    up = sum(p.running for p in procs)
    down = [p.name for p in procs if not p.running]
    restarted = [f"{p.name} x{p.restarts}" for p in procs if p.restarts]
    text = f"{up}/{len(procs)} running"
    if down:
        text += f" (down: {', '.join(down)})"
    if restarted:
        text += f", restarts: {', '.join(restarted)}"
    return text


def _model(v: Vitals) -> str:
    return ", ".join(v.models) if v.models else "none announced yet"


def block_lines(
    url: str | None,
    vitals: Vitals | None,
    procs: Sequence[ProcState],
    log_dir: Path,
    db_note: str | None = None,
) -> list[str]:
    """The status block, one string per line (no trailing newlines)."""
    lines = [f"LineWatch  {url or '(page: waiting for the feed)'}   Ctrl-C stops everything"]
    if vitals is None:
        lines.append(f"  history   {db_note or 'waiting for the database'}")
    else:
        lines += [
            f"  frames    {vitals.frames_per_s:.1f}/s  ({vitals.frames_total} stored)",
            f"  alerts    {vitals.alerts_open} open",
            f"  families  {vitals.families}",
            f"  workers   {vitals.workers_online} online of {vitals.workers_known} edge",
            f"  model     {_model(vitals)}",
        ]
    lines += [f"  processes {_procs(procs)}", f"  logs      {log_dir}/<component>.log"]
    return lines


def plain_line(url: str | None, vitals: Vitals | None, procs: Sequence[ProcState]) -> str:
    """The same figures on one line, for a log file or a pipe."""
    head = f"up: page {url or '-'}"
    if vitals is None:
        figures = "history not readable yet"
    else:
        figures = (
            f"frames {vitals.frames_per_s:.1f}/s | alerts {vitals.alerts_open} open | "
            f"families {vitals.families} | workers {vitals.workers_online}/"
            f"{vitals.workers_known} | model {_model(vitals)}"
        )
    return f"{head} | {figures} | processes {_procs(procs)}"


class Board:
    """Owns the terminal while `up` runs: ``say`` prints above the block, which is then
    redrawn; on a pipe, ``say`` prints and ``refresh`` adds a plain line. Thread-safe."""

    def __init__(
        self,
        out: TextIO,
        tty: bool,
        log_dir: Path,
        procs: Callable[[], Sequence[ProcState]],
        url: Callable[[], str | None],
        read: Callable[[], Vitals | None],
        db_note: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.out, self.tty, self.log_dir = out, tty, log_dir
        self._procs, self._url, self._read, self._db_note = procs, url, read, db_note
        self._lock = threading.Lock()
        self._drawn = 0  # lines of the block now on screen
        self._vitals: Vitals | None = None
        self._closed = False

    def say(self, text: str) -> None:
        with self._lock:
            self._erase()
            self.out.write(text + "\n")
            self._draw()
            self.out.flush()

    def refresh(self) -> None:
        """Read the figures (outside the lock: a slow DB never blocks ``say``) and show them."""
        vitals = self._read()
        with self._lock:
            self._vitals = vitals
            if self.tty:
                self._erase()
                self._draw()
            else:
                self.out.write(plain_line(self._url(), vitals, self._procs()) + "\n")
            self.out.flush()

    def close(self) -> None:
        with self._lock:
            self._drawn = 0  # leave the last block on screen; later news goes below it
            self._closed = True

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's start, clear below
            self._drawn = 0

    def _draw(self) -> None:
        if not self.tty or self._closed:
            return
        lines = block_lines(self._url(), self._vitals, self._procs(), self.log_dir, self._db_note())
        self.out.write("".join(CLEAR_LINE + line + "\n" for line in lines))
        self._drawn = len(lines)


class BoardHandler(logging.Handler):
    """Log records of the supervisor itself, shown above the block (warnings and worse)."""

    def __init__(self, board: Board) -> None:
        super().__init__(logging.WARNING)
        self.board = board

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.board.say(f"  ! {record.getMessage()}")
        except Exception:  # a logging handler must never raise
            self.handleError(record)


def run_board(board: Board, interval: float, stop: threading.Event) -> threading.Thread:
    """Refresh ``board`` every ``interval`` seconds until ``stop``; a daemon thread."""

    def loop() -> None:
        while not stop.is_set():
            board.refresh()
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="up-status", daemon=True)
    thread.start()
    return thread


def _print(text: str) -> None:
    print(text, flush=True)


@dataclass
class Terminal:
    """What `up` prints through (``say``), where children log, and the status board."""

    say: Callable[[str], None] = _print
    log_dir: Path | None = None  # None: children share the supervisor's stdout and stderr
    board: Board | None = None
    interval: float = 0.0
    reader: VitalsReader | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.board is not None and self.interval > 0:
            run_board(self.board, self.interval, self.stop)

    def close(self) -> None:
        self.stop.set()
        if self.board is not None:
            self.board.close()
        if self.reader is not None:
            self.reader.close()


def proc_states(children: Sequence[Child]) -> list[ProcState]:
    return [
        ProcState(c.comp.name, c.proc is not None and c.proc.poll() is None, len(c.exit_codes))
        for c in children
    ]


def open_terminal(
    children: Sequence[Child],
    *,
    verbose: bool,
    log_dir: Path,
    db_url: str,
    status_s: float | None,
    out: TextIO | None = None,
) -> Terminal:
    """Verbose: the old interleaved stream. Else children log to ``log_dir/<name>.log``, the
    supervisor to ``log_dir/up.log`` too, and a status block (a TTY) or a plain line every
    ``status_s`` (default 2 s on a TTY, 30 s otherwise; 0 = none) shows the figures."""
    if verbose:
        return Terminal()
    out = out or sys.stdout
    tty = out.isatty()
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_dir / "up.log", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    reader = VitalsReader(db_url)
    board = Board(
        out,
        tty,
        log_dir,
        procs=lambda: proc_states(children),
        url=lambda: next((c.url for c in children if c.url), None),
        read=reader.read,
        db_note=lambda: reader.error,
    )
    if tty:  # the terminal is the board's: log records go to the file, warnings above it
        for h in list(root.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                root.removeHandler(h)
        root.addHandler(BoardHandler(board))
    interval = status_s if status_s is not None else (2.0 if tty else 30.0)
    return Terminal(board.say, log_dir, board, interval, reader)
