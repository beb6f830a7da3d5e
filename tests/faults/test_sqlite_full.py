"""The SQLite volume fills up under a running store writer, then space returns.

Fault: the history DB lives on its own small tmpfs (mounted by the test; needs root, as
`.ci/run` has), shrunk to what is used plus 64 KiB while 4000 verdicts stream in; after the
writer has failed three writes, the volume grows to 64 MiB. No randomness (no seed).
Bound: the writer notices within 60 s; everything is stored within 120 s of the space
returning. Pass rule: while full the writer acks nothing new, logs why ("database or disk
is full") and stays up; afterwards tests/history.py finds lost = duplicated = unexpected
= 0 and no gaps, and no dead letters (docs/operations.md, "Faults").
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from history import PublisherLog, engine_rows, report, wait_accounted
from store_procs import Writer, count, publish_all, purge_sessions, wait_online
from store_support import cam, verdict

from broker.mqtt import MqttTransport
from services.store import schema as s
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.fault
N = 4000


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@pytest.fixture()
def volume(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of the test's own, resized with ``resize`` and unmounted at the end."""
    mnt = tmp_path / "vol"
    mnt.mkdir()
    res = _mount(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)])
    if res.returncode != 0:
        msg = f"cannot mount a tmpfs for the full-volume test (needs root): {res.stderr.strip()}"
        if os.environ.get("LINEWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    try:
        yield mnt
    finally:
        _mount(["umount", "-l", str(mnt)])


def resize(mnt: Path, size: int) -> None:
    res = _mount(["mount", "-o", f"remount,size={size}", str(mnt)])
    assert res.returncode == 0, res.stderr


def used(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_sqlite_volume_full_then_space_returns(
    volume: Path, mosquitto_url: str, site_id: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{volume / 'history.db'}"
    upgrade(url)
    engine = make_engine(url)
    writer = Writer(
        f"{site_id}-f", db_url=url, mqtt_url=mosquitto_url, site=site_id, workdir=tmp_path
    )
    pub = MqttTransport(mosquitto_url, f"{site_id}-pub", clean_start=True)
    c, log = cam(site=site_id), PublisherLog()
    msgs = [verdict(c, i) for i in range(N)]
    for m in msgs:
        log.record(c.key, m.seq)
    try:
        writer.start()
        wait_online(engine, [writer])
        wait_for(lambda: writer.stats, 30, what="the writer's first stats")
        resize(volume, used(volume) + 64 * 1024)  # the volume is full but for 64 KiB
        pub.start()
        publish_all(pub, msgs)  # the broker keeps what the writer cannot take yet
        wait_for(lambda: writer.stat("db_errors") >= 1, 60, 0.1, what="a failed write")
        acked = writer.stat("acked")
        errors = writer.stat("db_errors")
        wait_for(lambda: writer.stat("db_errors") >= errors + 2, 30, 0.1, what="retries")
        assert writer.stat("acked") == acked, "acked while the volume was full"
        assert writer.alive()
        assert "database or disk is full" in writer.log_path.read_text(errors="replace")
        stored_while_full = count(engine, s.T_FRAMES)
        assert stored_while_full < N
        resize(volume, 64 * 1024 * 1024)  # space returns
        print(report(wait_accounted(log, engine_rows(engine), 120)))
        wait_for(lambda: writer.stat("pending") == 0, 30, what="writer idle")
        assert writer.stat("acked") > acked
        assert count(engine, s.T_DEAD_LETTERS, component="store") == 0
        print({"stored_while_full": stored_while_full, **writer.stats})
    except BaseException:
        print(writer.log_tail())
        raise
    finally:
        pub.stop()
        writer.stop()
        purge_sessions(mosquitto_url, [writer.client_id])
        engine.dispose()
