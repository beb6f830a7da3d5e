"""Unit tests of the pure parts of `linewatch up`: restart backoff and component selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.upplan import (
    BACKOFF_CAP_S,
    COMPONENTS,
    Component,
    backoff_delay,
    http_url,
    load_extra_components,
    next_failures,
    parse_listening,
    parse_names,
    select_components,
    summary_table,
)

pytestmark = pytest.mark.unit


def _all(_: Component) -> bool:
    return True


def _names(comps: list[Component]) -> list[str]:
    return [c.name for c in comps]


def test_backoff_doubles_from_half_a_second_to_the_cap() -> None:
    delays = [backoff_delay(n) for n in range(1, 10)]
    assert delays[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert delays[7:] == [BACKOFF_CAP_S, BACKOFF_CAP_S]
    assert backoff_delay(10_000) == BACKOFF_CAP_S  # no overflow for absurd counts
    assert backoff_delay(0) == 0.5


def test_failure_count_resets_after_a_minute_of_uptime() -> None:
    assert next_failures(0, 0.1) == 1
    assert next_failures(4, 59.9) == 5
    assert next_failures(7, 60.0) == 1
    # a crash loop: counts climb, so the delay climbs
    n = 0
    for _ in range(4):
        n = next_failures(n, 1.0)
    assert backoff_delay(n) == 4.0


def test_component_table_order_and_commands() -> None:
    assert _names(list(COMPONENTS)) == [
        "broker",
        "store",
        "cluster",
        "dispatch",
        "edge-W1",
        "feed",
        "sim",
    ]
    from services.cli import COMMANDS

    for comp in COMPONENTS:
        assert comp.command in COMMANDS
    edge = next(c for c in COMPONENTS if c.name == "edge-W1")
    argv = edge.child_argv()
    assert argv[1:] == ["-m", "services.cli", "edge", "--id", "W1"]
    assert edge.display() == "linewatch edge --id W1"


def test_embedded_broker_only_without_external_url() -> None:
    chosen, skipped = select_components(COMPONENTS, embedded=True, available=_all)
    assert _names(chosen) == _names(list(COMPONENTS))[:-1]  # all but the opt-in sim
    chosen, skipped = select_components(COMPONENTS, embedded=False, available=_all)
    assert "broker" not in _names(chosen)
    assert ("broker", "external broker in use") in [(c.name, why) for c, why in skipped]


def test_unavailable_components_are_left_out_with_a_reason() -> None:
    have = {"broker", "store"}
    chosen, skipped = select_components(
        COMPONENTS, embedded=True, available=lambda c: c.name in have
    )
    assert _names(chosen) == ["broker", "store"]
    assert {c.name for c, why in skipped if why == "not available in this build"} == {
        "cluster",
        "dispatch",
        "edge-W1",
        "feed",
    }
    assert ("sim", "opt-in: --sim") in [(c.name, why) for c, why in skipped]


def test_the_simulator_runs_only_when_asked_for() -> None:
    chosen, _ = select_components(COMPONENTS, embedded=False, available=_all, wanted={"sim"})
    assert _names(chosen) == ["store", "cluster", "dispatch", "edge-W1", "feed", "sim"]
    chosen, _ = select_components(COMPONENTS, embedded=True, available=_all, only={"sim"})
    assert _names(chosen) == ["broker", "sim"]
    chosen, _ = select_components(
        COMPONENTS, embedded=True, available=_all, wanted={"sim"}, without={"sim"}
    )
    assert "sim" not in _names(chosen)
    from services.supervisor import _configured

    sim = next(c for c in COMPONENTS if c.name == "sim")
    assert _configured(sim, 1884, ()).display() == "linewatch sim"
    given = _configured(sim, 1884, ("--scenario", "tour"))
    assert given.display() == "linewatch sim --scenario tour" and given.opt_in and given.finishes
    from services.upplan import sim_options

    everything, _ = select_components(COMPONENTS, embedded=True, available=_all, wanted={"sim"})
    assert sim_options(everything, ["--fps", "5"]) == (
        "--wait-for", "store,dispatch,edge", "--fps", "5"
    )  # fmt: skip
    alone = [c for c in everything if c.name in ("broker", "sim")]
    assert sim_options(alone, []) == ()


def test_only_keeps_the_embedded_broker_and_without_removes_it() -> None:
    chosen, _ = select_components(COMPONENTS, embedded=True, available=_all, only={"feed"})
    assert _names(chosen) == ["broker", "feed"]
    chosen, _ = select_components(
        COMPONENTS, embedded=True, available=_all, without={"broker", "sim"}
    )
    assert _names(chosen) == ["store", "cluster", "dispatch", "edge-W1", "feed"]


def test_unknown_and_duplicate_names_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown component"):
        select_components(COMPONENTS, embedded=True, available=_all, only={"stor"})
    with pytest.raises(ValueError, match="unknown component"):
        select_components(COMPONENTS, embedded=True, available=_all, without={"nope"})
    extra = (*COMPONENTS, Component("store", argv=("true",)))
    with pytest.raises(ValueError, match="duplicate"):
        select_components(extra, embedded=True, available=_all)


def test_parse_names() -> None:
    assert parse_names(None) is None
    assert parse_names("store, feed,,") == {"store", "feed"}


def test_extra_components_from_json(tmp_path: Path) -> None:
    f = tmp_path / "extra.json"
    f.write_text(json.dumps([{"name": "bridge", "argv": ["/bin/sleep", "5"]}]))
    (extra,) = load_extra_components(str(f))
    assert extra.command is None
    assert extra.child_argv() == ["/bin/sleep", "5"]
    assert load_extra_components(None) == []
    bad_entries = (
        {"name": "x"},
        [{"name": "", "argv": ["a"]}],
        [{"name": "a,b", "argv": ["a"]}],
        [{"name": "x", "argv": [1]}],
        [{"name": "x", "argv": ["a"], "http": "yes"}],
    )
    for bad in bad_entries:
        f.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            load_extra_components(str(f))


def test_summary_table_aligns_columns() -> None:
    text = summary_table([("broker", "12", "linewatch broker"), ("edge-W1", "12345", "x")])
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "PID", "COMMAND"]
    assert len({line.index(line.split()[2]) for line in lines}) == 1  # commands aligned


def _tcp_table(*rows: tuple[str, str, str]) -> str:
    """A /proc/net/tcp{,6} text: header, then (local hex addr:port, state, inode) rows."""
    lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when ... inode"]
    lines += [
        f"   {n}: {local} 00:0000 {st} 0:0 00:0 0 0 0 {inode} 1"
        for n, (local, st, inode) in enumerate(rows)
    ]
    return "\n".join(lines) + "\n"


LISTEN, ESTABLISHED = "0A", "01"
TCP = _tcp_table(
    ("0100007F:1F90", LISTEN, "111"),  # 127.0.0.1:8080
    ("00000000:0050", LISTEN, "222"),  # 0.0.0.0:80
    ("0100007F:075B", ESTABLISHED, "333"),  # a client connection, not a listener
    ("0100007F:1F91", LISTEN, "444"),  # another process's listener
)
TCP6 = _tcp_table(
    ("0" * 24 + "01000000:1F92", LISTEN, "555"),  # [::1]:8082
    ("0" * 32 + ":1F93", LISTEN, "666"),  # [::]:8083
)


def test_parse_listening_only_listen_sockets_of_the_process() -> None:
    assert parse_listening(TCP, {"111", "222", "333"}) == [("127.0.0.1", 8080), ("0.0.0.0", 80)]
    assert parse_listening(TCP, set()) == []
    assert parse_listening(TCP6, {"555", "666"}) == [("::1", 8082), ("::", 8083)]


def test_http_url_for_wildcard_and_ipv6() -> None:
    assert http_url("0.0.0.0", 8080) == "http://127.0.0.1:8080/"
    assert http_url("::", 80) == "http://127.0.0.1:80/"
    assert http_url("::1", 8080) == "http://[::1]:8080/"
    assert http_url("10.0.0.5", 9000) == "http://10.0.0.5:9000/"


def test_extra_http_flag(tmp_path: Path) -> None:
    f = tmp_path / "extra.json"
    f.write_text(json.dumps([{"name": "web", "argv": ["srv"], "http": True}]))
    (web,) = load_extra_components(str(f))
    assert web.serves_http
    f.write_text(json.dumps(["junk"]))
    with pytest.raises(ValueError, match="'junk'"):
        load_extra_components(str(f))
    assert next(c for c in COMPONENTS if c.name == "feed").serves_http


def test_summary_redacts_passwords_and_groups_left_out_parts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.supervisor import SupervisorSettings, print_summary
    from services.upproc import Child

    settings = SupervisorSettings(db_url="postgresql+psycopg://lw:dbpass@db/linewatch")
    store = Child(Component("store", ("store",)))
    skipped = [(c, "not available in this build") for c in COMPONENTS if c.name in ("sim", "feed")]
    print_summary([store], skipped, settings, "mqtt://u:mqpass@host:1883", False)
    out = capsys.readouterr().out
    assert "dbpass" not in out and "mqpass" not in out
    assert "postgresql+psycopg://lw:***@db/linewatch" in out
    assert "mqtt://u:***@host:1883" in out
    assert "not started (not available in this build): feed, sim" in out
    assert "store" in out and "linewatch store" in out
