"""Pure parts of `linewatch up`: the component table, selection and restart backoff."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # names of extra components


@dataclass(frozen=True)
class Component:
    """One supervised process. ``args`` go to ``linewatch``; ``argv`` (extras) runs as is."""

    name: str
    args: tuple[str, ...] = ()
    only_embedded: bool = False
    argv: tuple[str, ...] = ()
    serves_http: bool = False  # `up` announces the URL this process listens on
    opt_in: bool = False  # runs only when asked for (`--sim`, or named in `--only`)
    finishes: bool = False  # exit status 0 means its work is done: not restarted

    @property
    def command(self) -> str | None:
        """The `linewatch` subcommand this component runs (None for an extra command)."""
        return None if self.argv else self.args[0]

    def child_argv(self) -> list[str]:
        if self.argv:
            return list(self.argv)
        return [sys.executable, "-m", "services.cli", *self.args]

    def display(self) -> str:
        return " ".join(self.argv) if self.argv else "linewatch " + " ".join(self.args)


# The one table of what `linewatch up` runs, in start order. Later parts join it here.
COMPONENTS: tuple[Component, ...] = (
    Component("broker", ("broker",), only_embedded=True),
    Component("store", ("store",)),
    Component("cluster", ("cluster",)),
    Component("dispatch", ("dispatch",)),
    Component("edge-W1", ("edge", "--id", "W1")),
    Component("feed", ("feed",), serves_http=True),
    # the simulated line publishes made-up frames: never into a real plant's broker unasked
    Component("sim", ("sim",), opt_in=True, finishes=True),
)


def backoff_delay(failures: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Delay before the restart after ``failures`` consecutive crashes (1 -> base)."""
    if failures <= 1:
        return base
    return min(cap, base * 2.0 ** min(failures - 1, 32))


def next_failures(
    previous: int, uptime_s: float, reset_after: float = BACKOFF_RESET_AFTER_S
) -> int:
    """Consecutive-crash count after a child that ran ``uptime_s`` exited."""
    return 1 if uptime_s >= reset_after else previous + 1


def parse_names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def select_components(
    components: Sequence[Component],
    *,
    embedded: bool,
    available: Callable[[Component], bool],
    only: set[str] | None = None,
    without: set[str] | None = None,
    wanted: set[str] | None = None,
) -> tuple[list[Component], list[tuple[Component, str]]]:
    """Which components to run, and the others with the reason they are left out.

    The embedded broker is infrastructure: it runs whenever it is needed, even with
    ``--only``, unless ``--without broker`` says otherwise. An opt-in component (the
    simulator) runs only when it is in ``wanted`` or ``only``. Unknown names raise ValueError.
    """
    known = {c.name for c in components}
    if len(known) != len(components):
        dupes = sorted(
            {c.name for c in components if [d.name for d in components].count(c.name) > 1}
        )
        raise ValueError(f"duplicate component name(s): {', '.join(dupes)}")
    unknown = sorted(((only or set()) | (without or set()) | (wanted or set())) - known)
    if unknown:
        raise ValueError(
            f"unknown component(s): {', '.join(unknown)} "
            f"(known: {', '.join(c.name for c in components)})"
        )
    chosen: list[Component] = []
    skipped: list[tuple[Component, str]] = []
    for comp in components:
        if comp.only_embedded and not embedded:
            skipped.append((comp, "external broker in use"))
        elif without and comp.name in without:
            skipped.append((comp, "--without"))
        elif only is not None and comp.name not in only and not comp.only_embedded:
            skipped.append((comp, "not in --only"))
        elif comp.opt_in and comp.name not in (wanted or set()) | (only or set()):
            skipped.append((comp, f"opt-in: --{comp.name}"))
        elif not available(comp):
            skipped.append((comp, "not available in this build"))
        else:
            chosen.append(comp)
    return chosen, skipped


def sim_options(chosen: Sequence[Component], given: Sequence[str]) -> tuple[str, ...]:
    """Options of the simulator under `up`: wait for the store, dispatcher and edge workers
    this run starts (frames sent before they listen would reach nobody), then ``given``
    (which may override ``--wait-for``: the last one wins)."""
    feeds = [r for r in ("store", "dispatch", "edge") if any(c.command == r for c in chosen)]
    return (("--wait-for", ",".join(feeds)) if feeds else ()) + tuple(given)


def load_extra_components(path: str | None) -> list[Component]:
    """Extra commands from a JSON file: ``[{"name": str, "argv": [str, ...], "http": bool?}]``.

    ``http: true`` makes `up` announce the URL the process listens on, as for the feed.
    """
    if not path:
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{name, argv}} objects")
    extras = []
    for raw in data:
        item = raw if isinstance(raw, dict) else {}
        name, argv, http = item.get("name"), item.get("argv"), item.get("http", False)
        if (
            not isinstance(name, str)
            or not NAME_RE.fullmatch(name)
            or not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) for a in argv)
            or not isinstance(http, bool)
        ):
            raise ValueError(
                f"{path}: bad entry {raw!r}: needs name ([A-Za-z0-9_-]{{1,64}}), "
                "argv (list[str]) and optionally http (bool)"
            )
        extras.append(Component(name, argv=tuple(argv), serves_http=http))
    return extras


def summary_table(rows: Iterable[tuple[str, str, str]]) -> str:
    rows = [("NAME", "PID", "COMMAND"), *rows]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"  {a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows)


def parse_listening(proc_net_tcp: str, inodes: set[str]) -> list[tuple[str, int]]:
    """(host, port) of the LISTEN sockets among ``inodes`` in a /proc/net/tcp{,6} table."""
    found = []
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:
            continue
        addr_hex, port_hex = fields[1].rsplit(":", 1)
        raw = b"".join(bytes.fromhex(addr_hex[i : i + 8])[::-1] for i in range(0, len(addr_hex), 8))
        host = str(ipaddress.ip_address(raw))
        found.append((host, int(port_hex, 16)))
    return found


def http_url(host: str, port: int) -> str:
    """A URL to reach a listener: wildcard addresses become 127.0.0.1."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"
