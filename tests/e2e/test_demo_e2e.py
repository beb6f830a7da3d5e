"""`make demo` with a short-duration flag (opt-in: `make test-live`, marker ``live``): the stack
starts on the model that is ready (here the tiny model stands in for an already-built
`quick` one), shows verdicts, builds the next profile (`test`, a real build) in the
background and switches the running worker to it without a restart; a second `make demo`
finds that model ready and shows verdicts within a minute.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import edge_tinymodel as tiny
import pytest
from edge_stack import query
from feed_e2e import _free_port
from helpers import wait_for

# the background build takes minutes on a busy machine
pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "var" / "artifacts"


def _make_demo(
    tmp: Path, site: str, seconds: int, mqtt: str, name: str, args: str = "--then test"
) -> subprocess.Popen[bytes]:
    worker = f"E{site}"
    extra = tmp / "extra.json"
    edge = [sys.executable, "-m", "services.cli", "edge", "--id", worker]  # the served model
    extra.write_text(json.dumps([{"name": "edge", "argv": edge}]))
    env = {
        **os.environ,
        "LINEWATCH_MQTT_URL": mqtt,
        "LINEWATCH_DB_URL": f"sqlite:///{tmp / 'lw.db'}",
        "LINEWATCH_DATA_DIR": str(tmp / "var"),
        "LINEWATCH_UP_COMPONENTS": str(extra),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_CLUSTER_ID": f"c-{site}",
        "LINEWATCH_DISPATCHER_ID": f"dp-{site}",
        "LINEWATCH_WORKER_PREFIX": worker,
        "LINEWATCH_DISCOVER_TOPICS": json.dumps(
            [f"lw/v1/{site}/+/+/camera/+/frame", f"lw/v1/{site}/+/+/sensor/+"]
        ),
        "LINEWATCH_FEED_NAME": site,
        "LINEWATCH_FEED_PORT": str(_free_port()),
        "LINEWATCH_STATUS_S": "5",
    }
    sim = f"--site {site} --fps 1 --size 96 --pool 3 --sensors 1 --seed 3"
    out = (tmp / f"{name}.out").open("wb")
    cmd = [
        "make", "--no-print-directory", "demo", f"VENV={sys.prefix}", f"DEMO_SECONDS={seconds}",
        f"DEMO_ARGS={args} --up-args '--without edge-W1'", f"SIM_ARGS={sim}",
    ]  # fmt: skip
    try:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()


def _versions(db: Path, site: str) -> list[str]:
    sql = "SELECT model_version FROM frames WHERE site = ? ORDER BY decided_at"
    try:
        return [v for (v,) in query(db, sql, site)] if db.exists() else []
    except sqlite3.OperationalError:  # created, not migrated yet
        return []


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to make and `linewatch demo` (one process group; make leaves at once, the
    demo stops the stack and its build), then wait until every one of them has exited."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    try:
        wait_for(lambda: _gone(proc.pid), 90, 0.2, what="the demo's processes stopped")
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.fixture
def own_mosquitto(mosquitto_url: str) -> Iterator[str]:
    """A Mosquitto of the test's own (bench/_broker.py): on the shared test broker, other
    sessions' dispatchers may place this demo's streams on their workers."""
    from bench._broker import private_broker

    with private_broker() as url:
        yield url


def test_make_demo_serves_the_ready_model_then_switches_to_the_background_build(
    own_mosquitto: str, tmp_path: Path
) -> None:
    mosquitto_url = own_mosquitto
    models = tmp_path / "var" / "models"
    tiny.build(models / "quick")  # an already-built `quick` model
    site = f"d{uuid.uuid4().hex[:10]}"
    db = tmp_path / "lw.db"
    report: dict[str, float | str] = {}
    started = time.monotonic()
    demo = _make_demo(tmp_path, site, 900, mosquitto_url, "first")
    try:
        first = wait_for(lambda: _versions(db, site), 300, 1, what="the first verdicts")[0]
        report["first_verdict_s"] = round(time.monotonic() - started, 1)
        quick = json.loads((models / "quick" / "model.card.json").read_text())["name"]
        assert first.startswith(f"{quick}/"), first  # served from the ready model
        switched = wait_for(
            lambda: next((v for v in _versions(db, site) if v != first), None),
            840, 2, what="verdicts of the model built in the background",
        )  # fmt: skip
        report["switched_s"] = round(time.monotonic() - started, 1)
        report["versions"] = f"{first} -> {switched}"
    except BaseException:
        logs = tmp_path / "var" / "log"
        for f in sorted(logs.glob("*.log")) if logs.exists() else []:
            print(f"==== {f.name}\n{f.read_text(errors='replace')[-2000:]}")
        print((tmp_path / "first.out").read_text(errors="replace")[-3000:])
        raise
    finally:
        _stop(demo)
    assert switched.startswith("test/"), switched  # the background build's card name
    assert (models / "serve" / "model.card.json").read_bytes() == (
        models / "test" / "model.card.json"
    ).read_bytes()
    ups = (tmp_path / "var" / "log" / "up.log").read_text()
    assert "restarted edge" not in ups, ups[-2000:]  # switched in place, not restarted

    # a later run: the background profile's model is ready and current, so verdicts follow
    # within a minute and nothing is rebuilt
    before = len(_versions(db, site))
    started = time.monotonic()
    again = _make_demo(tmp_path, site, 60, mosquitto_url, "second")
    try:
        wait_for(lambda: len(_versions(db, site)) > before, 60, 1, what="verdicts of run 2")
        report["second_run_first_verdict_s"] = round(time.monotonic() - started, 1)
        assert again.wait(120) == 0  # --for ran out: stopped by itself
        wait_for(lambda: _gone(again.pid), 90, 0.2, what="run 2 stopped")
    finally:
        _stop(again)
    assert _versions(db, site)[-1] == switched
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "demo-run.json").write_text(json.dumps(report))
    print(json.dumps(report))


def test_make_demo_on_a_fresh_clone_builds_the_first_model_then_starts(
    own_mosquitto: str, tmp_path: Path
) -> None:
    mosquitto_url = own_mosquitto
    # nothing built: the first profile is built in the foreground (here `test`, the
    # cheapest real one; `quick` by default), then the stack starts on it
    site = f"f{uuid.uuid4().hex[:10]}"
    db = tmp_path / "lw.db"
    started = time.monotonic()
    demo = _make_demo(tmp_path, site, 600, mosquitto_url, "fresh", "--first test --then test")
    try:
        first = wait_for(lambda: _versions(db, site), 420, 1, what="the first verdicts")[0]
        took = round(time.monotonic() - started, 1)
    except BaseException:
        print((tmp_path / "fresh.out").read_text(errors="replace")[-3000:])
        raise
    finally:
        _stop(demo)
    assert first.startswith("test/"), first
    out = (tmp_path / "fresh.out").read_text()
    assert "no model yet; building the test model first" in out
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "demo-fresh.json").write_text(json.dumps({"first_verdict_s": took}))
    print(json.dumps({"fresh_first_verdict_s": took}))
