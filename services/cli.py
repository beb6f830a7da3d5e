"""The `linewatch` command: one entry point that dispatches to every part's own `main(argv)`."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from broker import logsafe

# name -> (module, one-line help). Each module exposes `main(argv: list[str]) -> int` and
# parses its own options, so parts never edit each other's argument parsers.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("services.supervisor", "run the whole stack on this machine (supervised children)"),
    "broker": ("broker.embedded", "run the embedded MQTT broker (zero-setup default)"),
    "edge": ("edge.cli", "run an edge worker: frames and sensors in, verdicts out"),
    "store": ("services.store.cli", "run the history writer; retention"),
    "db": ("services.store.dbcli", "database migrations: upgrade | downgrade | current"),
    "cluster": ("services.clustering.cli", "run the defect-family clustering service; eval"),
    "dispatch": ("services.dispatcher.cli", "run the stream dispatcher; offline plan"),
    "feed": ("services.feed.cli", "run the operator feed (HTTP API, SSE, web page); tokens"),
    "sim": ("services.sim.cli", "run the production-line simulator (publishes frames, sensors)"),
    "demo": ("services.demo", "up + sim on the best model ready; builds the better one meanwhile"),
    "model": (
        "services.model_cli",
        "build, train (also from history), evaluate, promote, export and quantize the model",
    ),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: linewatch COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "`linewatch COMMAND --help` shows a command's options.",
        "Settings: LINEWATCH_* environment variables, or a TOML file named by LINEWATCH_CONFIG.",
    ]
    return "\n".join(lines)


def resolve(name: str) -> Callable[[list[str]], int] | None:
    """The command's main function, or None when that part is not available yet."""
    module_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    main_fn: Callable[[list[str]], int] = module.main
    return main_fn


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"linewatch: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logsafe.install()  # a newline from the wire never forges a log line
    os.umask(0o077)  # databases, evidence, state files: readable by this user only
    fn = resolve(name)
    if fn is None:
        print(f"linewatch {name}: not yet available in this build", file=sys.stderr)
        return 3
    return int(fn(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
