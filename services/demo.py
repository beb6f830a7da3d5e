"""`linewatch demo` (`make demo`): the stack and the simulated line on the best model that is
ready now, while the better model builds in the background; the edge workers switch to it
without a restart when its card lands in the directory they serve from.

First run on a fresh clone: no model is ready, so the `quick` profile is built first (a few
minutes), the stack starts on it, and the `demo` profile builds in the background. Later
runs: the `demo` model is ready (its build is up to date and returns at once), so the
stack starts at once.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from broker.config import load_settings
from services.supervisor import SupervisorSettings

CARD = "model.card.json"  # edge/model/card.py CARD_NAME (services never import edge)
SERVE = "serve"


def ready(model_dir: Path) -> bool:
    """A model directory with a card (a build writes its directory atomically)."""
    return (model_dir / CARD).is_file()


def promote(src: Path, dst: Path) -> bool:
    """Make ``dst`` serve the model of ``src``: every file copied in (each replaced
    atomically), the card last, so a worker watching ``dst`` sees a new card only once its
    files are there (and checks their hashes before it switches). False when ``dst`` already
    serves that card."""
    card = (src / CARD).read_bytes()
    if (dst / CARD).is_file() and (dst / CARD).read_bytes() == card:
        return False
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name != CARD:
            tmp = dst / f".{f.name}.new"
            shutil.copyfile(f, tmp)
            os.replace(tmp, dst / f.name)
    tmp = dst / f".{CARD}.new"
    tmp.write_bytes(card)
    os.replace(tmp, dst / CARD)
    return True


def _linewatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def build(profile: str, models: Path, log: Path | None) -> subprocess.Popen[bytes]:
    """`linewatch model build --profile P --out MODELS/P` in its own process group (low
    priority); its output to ``log`` (None: this terminal)."""
    out = None if log is None else log.open("ab")
    try:
        cmd = ["nice", "-n", "10", *_linewatch("model", "build", "--profile", profile)]
        cmd += ["--out", str(models / profile)]
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )  # fmt: skip
    finally:
        if out is not None:
            out.close()


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


class Background:
    """The better model's build; its model is promoted to the served directory when done."""

    def __init__(self, profile: str, models: Path, log: Path, say: Callable[[str], None]):
        self.profile, self.models, self.log, self.say = profile, models, log, say
        self.proc: subprocess.Popen[bytes] | None = None
        self.promoted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-build", daemon=True)

    def start(self) -> Background:
        self.proc = build(self.profile, self.models, self.log)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        if rc != 0:
            if rc > 0:  # not a stop
                self.say(f"demo: the {self.profile} model build failed (exit {rc}); see {self.log}")
            return
        if promote(self.models / self.profile, self.models / SERVE):
            self.say(f"demo: the {self.profile} model is ready; the workers switch to it")
        self.promoted.set()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self._thread.join(5)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="linewatch demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--first", default="quick", help="profile built first when none is ready")
    p.add_argument("--then", default="demo", help="profile built in the background")
    p.add_argument("--for", dest="seconds", type=float, help="stop after this many seconds")
    p.add_argument("--sim-args", default="--scenario tour", help="options for `linewatch sim`")
    p.add_argument("--up-args", default="", help="more options for `linewatch up`, one string")
    p.add_argument("--verbose", action="store_true", help="`linewatch up --verbose`")
    return p.parse_args(argv)


def initial_model(models: Path, first: str, then: str) -> Path | None:
    """The best model ready now: the background profile's, else the first profile's."""
    for profile in (then, first):
        if ready(models / profile):
            return models / profile
    return None


def main(argv: list[str]) -> int:
    args = _parse(argv)
    settings = load_settings(SupervisorSettings)
    models = settings.data_dir / "models"
    log_dir = settings.data_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    say = print
    model = initial_model(models, args.first, args.then)
    if model is None:
        say(f"demo: no model yet; building the {args.first} model first (a few minutes)")
        first = build(args.first, models, None)
        try:
            rc = first.wait()
        finally:  # Ctrl-C does not reach it (its own session): stop it ourselves
            stop(first)
        if rc != 0:
            say(f"demo: the {args.first} model build failed (exit {rc})")
            return rc
        model = models / args.first
    promote(model, models / SERVE)
    say(f"demo: serving {model.name}; the {args.then} model builds in the background "
        f"({log_dir / 'model-build.log'})")  # fmt: skip
    bg = Background(args.then, models, log_dir / "model-build.log", say).start()
    env = {**os.environ, "LINEWATCH_MODEL_DIR": str(models / SERVE)}
    sim_args = args.sim_args
    if "--epoch" not in shlex.split(sim_args):  # each run's seqs apart from the last run's
        sim_args += f" --epoch {int(time.time())}"
    cmd = _linewatch("up", "--sim", "--sim-args", sim_args, *shlex.split(args.up_args))
    up = subprocess.Popen(cmd + (["--verbose"] if args.verbose else []), env=env)
    stopping = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C reaches `up` too (same process group)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        while up.poll() is None and not stopping.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                break
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        return up.wait()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        bg.stop()
