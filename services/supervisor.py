"""`linewatch up`: run every LineWatch process on this machine as supervised children."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from broker.config import EMBEDDED_PORT, CommonSettings, MqttUrl, load_settings, redact_url
from services.upplan import (
    COMPONENTS,
    Component,
    load_extra_components,
    parse_names,
    select_components,
    sim_options,
    summary_table,
)
from services.upproc import Child, Supervisor, command_available, port_open, wait_port
from services.upstatus import open_terminal

log = logging.getLogger("linewatch.up")

EXTRA_ENV = "LINEWATCH_UP_COMPONENTS"  # JSON file of extra commands to supervise


class SupervisorSettings(CommonSettings):
    """Settings of `linewatch up` (LINEWATCH_* like every process)."""

    stop_timeout_s: float = Field(default=10.0, gt=0, le=300)  # SIGTERM -> SIGKILL grace
    broker_wait_s: float = Field(default=20.0, gt=0, le=600)  # broker port must open by then
    # seconds between status refreshes; None: 2 on a terminal, 30 on a pipe; 0: none
    status_s: float | None = Field(default=None, ge=0, le=3600)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="linewatch up",
        description="Run the LineWatch processes on this machine as supervised children: the "
        "embedded broker (unless LINEWATCH_MQTT_URL names one), then every "
        "component that exists. Ctrl-C or SIGTERM stops them all.",
    )
    p.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="run only these components (the embedded broker still runs)",
    )
    p.add_argument("--without", metavar="NAME[,NAME]", help="run everything except these")
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="do not restart children that exit; stop when all have exited",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="every process's log interleaved on this terminal (default: var/log/<name>.log "
        "and a status block)",
    )
    p.add_argument(
        "--sim",
        action="store_true",
        help="also run the simulated production line (`linewatch sim`; off unless asked)",
    )
    p.add_argument(
        "--sim-args",
        default="",
        metavar="ARGS",
        help='options for `linewatch sim`, one string, e.g. "--scenario tour --fps 5"',
    )
    p.add_argument(
        "--broker-port",
        type=int,
        default=EMBEDDED_PORT,
        help=f"port of the embedded broker (default {EMBEDDED_PORT})",
    )
    return p.parse_args(argv)


def _run_migrations(env: dict[str, str], log_dir: Path | None) -> bool:
    log.info("running `linewatch db upgrade`")
    argv = [sys.executable, "-m", "services.cli", "db", "upgrade"]
    if log_dir is None:
        rc = subprocess.call(argv, env=env, stdin=subprocess.DEVNULL)
    else:
        with (log_dir / "db.log").open("ab") as out:
            rc = subprocess.call(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
    if rc != 0:
        log.error("`linewatch db upgrade` failed with status %d; not starting services", rc)
    return rc == 0


def print_summary(
    started: list[Child],
    skipped: list[tuple[Component, str]],
    settings: CommonSettings,
    mqtt_url: str,
    embedded: bool,
    say: Callable[[str], None] = print,
) -> None:
    rows = [(c.comp.name, str(c.proc.pid) if c.proc else "-", c.comp.display()) for c in started]
    lines = [
        f"linewatch up: {len(started)} process(es) running (pid {os.getpid()})",
        summary_table(rows),
    ]
    by_reason: dict[str, list[str]] = {}
    for comp, why in skipped:
        by_reason.setdefault(why, []).append(comp.name)
    lines += [f"  not started ({why}): {', '.join(names)}" for why, names in by_reason.items()]
    lines.append(f"  MQTT  {redact_url(mqtt_url)}{' (embedded)' if embedded else ''}")
    lines.append(f"  DB    {redact_url(settings.db_url)}")
    if any(c.comp.serves_http for c in started):
        lines.append("  (the URL of each HTTP process is printed once it listens)")
    say("\n".join(lines))


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    settings = load_settings(SupervisorSettings)
    embedded = "mqtt_url" not in settings.model_fields_set
    mqtt_url = f"mqtt://127.0.0.1:{args.broker_port}" if embedded else settings.mqtt_url
    try:
        comps = (*COMPONENTS, *load_extra_components(os.environ.get(EXTRA_ENV)))
        chosen, skipped = select_components(
            comps,
            embedded=embedded,
            available=command_available,
            only=parse_names(args.only),
            without=parse_names(args.without),
            wanted={"sim"} if args.sim else None,
        )
        sim_args = sim_options(chosen, shlex.split(args.sim_args))
    except (ValueError, OSError) as exc:
        print(f"linewatch up: {exc}", file=sys.stderr)
        return 2
    broker = MqttUrl.parse(mqtt_url)
    if embedded and any(c.name == "broker" for c in chosen) and port_open(broker.host, broker.port):
        print(
            f"linewatch up: port {broker.port} is already in use; set LINEWATCH_MQTT_URL "
            "to use the broker there, or --broker-port",
            file=sys.stderr,
        )
        return 1
    env = {**os.environ, "LINEWATCH_MQTT_URL": mqtt_url, "PYTHONUNBUFFERED": "1"}
    children = [Child(_configured(c, broker.port, sim_args)) for c in chosen]
    try:
        term = open_terminal(
            children,
            verbose=args.verbose,
            log_dir=settings.data_dir / "log",
            db_url=settings.db_url,
            status_s=settings.status_s,
        )
    except OSError as exc:
        print(f"linewatch up: cannot write the logs: {exc} (or use --verbose)", file=sys.stderr)
        return 1
    sup = Supervisor(
        children,
        env,
        restart=not args.no_restart,
        stop_timeout=settings.stop_timeout_s,
        log_dir=term.log_dir,
        say=term.say,
    )
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    try:
        if not _start(sup, embedded, broker, settings):
            return 1
        if not sup.stopping.is_set():
            print_summary(children, skipped, settings, mqtt_url, embedded, term.say)
            term.start()
        return sup.run()
    finally:
        term.close()
        sup.stop_all()  # also on an unexpected error: never leave children behind


def _configured(comp: Component, broker_port: int, sim_args: tuple[str, ...]) -> Component:
    """The component as this run starts it: the broker on its port, the sim with its options."""
    if comp.name == "broker" and comp.command == "broker":
        return Component("broker", ("broker", "--port", str(broker_port)), True)
    if comp.name == "sim" and comp.command == "sim" and sim_args:
        return Component("sim", ("sim", *sim_args), opt_in=True, finishes=True)
    return comp


def _start(sup: Supervisor, embedded: bool, broker: MqttUrl, settings: SupervisorSettings) -> bool:
    """Broker first (wait for its port), migrations, then every other child."""
    rest = list(sup.children)
    head = [c for c in rest if c.comp.name == "broker"]
    if not all(sup.spawn(c) for c in head):
        return False

    def alive() -> bool:
        running = all(c.proc is not None and c.proc.poll() is None for c in head)
        return running and not sup.stopping.is_set()

    where = "embedded broker" if embedded else "broker"
    if not wait_port(broker.host, broker.port, settings.broker_wait_s, alive):
        if not sup.stopping.is_set():
            log.error(
                "%s at %s:%d not reachable within %.0fs",
                where,
                broker.host,
                broker.port,
                settings.broker_wait_s,
            )
            return False
        return True
    if command_available(Component("db", ("db",))) and not _run_migrations(sup.env, sup.log_dir):
        return False
    for child in rest:
        if child.proc is None and not sup.stopping.is_set() and not sup.spawn(child):
            return False
    return True
