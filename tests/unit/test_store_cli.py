"""`linewatch db …` and `linewatch store retention` on SQLite; subscriptions; retained clears."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import wait_for
from store_support import assignment, cam

from broker import topics
from broker.codecs import encode
from broker.loopback import LoopbackHub, LoopbackTransport
from services.store import cli, dbcli
from services.store.engine import current_revision, head_revision, make_engine
from services.store.writer import TOPICS, StoreWriter, topics_for

pytestmark = pytest.mark.unit


def test_db_upgrade_current_downgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert dbcli.main(["--url", url, "current"]) == 0
    assert "behind: run `linewatch db upgrade`" in capsys.readouterr().out
    assert dbcli.main(["--url", url, "upgrade"]) == 0
    assert f"revision {head_revision()}; head {head_revision()} (up to date)" in (
        capsys.readouterr().out
    )
    assert dbcli.main(["--url", url, "downgrade", "base"]) == 0
    assert current_revision(make_engine(url)) is None
    assert dbcli.main(["--url", url, "upgrade", "nosuchrev"]) == 1
    assert "nosuchrev" in capsys.readouterr().err


def test_store_refuses_a_database_that_is_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    monkeypatch.setenv("LINEWATCH_DB_URL", url)
    assert cli.main(["retention", "--dry-run"]) == 2
    assert "run `linewatch db upgrade` first" in capsys.readouterr().err
    assert dbcli.main(["upgrade"]) == 0
    capsys.readouterr()
    assert cli.main(["retention", "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True and report["rows"]["frames"] == 0


def test_invalid_store_settings_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEWATCH_SQLITE_SYNCHRONOUS", "sometimes")
    monkeypatch.setenv("LINEWATCH_STORE_BATCH_ROWS", "5000")
    with pytest.raises(SystemExit) as exc:
        cli.main(["retention"])
    assert exc.value.code == 2


def test_site_subscriptions() -> None:
    assert topics_for(None) == TOPICS
    mine = topics_for("plantA")
    assert all(t.startswith(("lw/v1/plantA/", "lw/v1/_sys/")) for t in mine)
    assert len(mine) == len(TOPICS) and topics.ALL_FEATURES not in TOPICS


def test_cleared_retained_assignment_is_not_a_dead_letter(tmp_path: Path) -> None:
    from store_support import migrated_sqlite

    engine = make_engine(migrated_sqlite(tmp_path))
    hub = LoopbackHub()
    sub, pub = LoopbackTransport(hub, "store"), LoopbackTransport(hub, "pub")
    writer = StoreWriter(engine, sub)
    writer.start()
    sub.start()
    pub.start()
    try:
        pub.publish(topics.assignment_topic("W1"), encode(assignment("W1", 1, [cam()])))
        pub.publish(topics.assignment_topic("W1"), b"", retain=True)
        wait_for(lambda: sub.stats()["acked"] == 2, 5, what="acks")
        assert writer.stats()["retained_cleared"] == 1 and writer.stats().get("rejected", 0) == 0
    finally:
        writer.stop()
        sub.stop()
        pub.stop()
