"""`linewatch db upgrade [REV] | downgrade [REV] | current`: schema migrations (Alembic)."""

from __future__ import annotations

import argparse
import sys

from broker.config import CommonSettings, load_settings, redact_text, redact_url
from services.store import engine as eng


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linewatch db", description=__doc__)
    p.add_argument("--url", help="database URL (default: LINEWATCH_DB_URL)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upgrade", help="migrate up to REV (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="migrate down to REV (e.g. -1, or base)")
    down.add_argument("revision", nargs="?", default="-1")
    sub.add_parser("current", help="print the database's revision and this build's head")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    url = args.url or load_settings(CommonSettings).db_url
    shown = redact_url(url)
    try:
        if args.cmd == "upgrade":
            eng.upgrade(url, args.revision)
        elif args.cmd == "downgrade":
            eng.downgrade(url, args.revision)
        engine = eng.make_engine(url)
        try:
            current = eng.current_revision(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # an unreachable database, an unknown revision, ...
        detail = redact_text(f"{type(exc).__name__}: {exc}", url)
        print(f"linewatch db {args.cmd}: {shown}: {detail}", file=sys.stderr)
        return 1
    head = eng.head_revision()
    state = "up to date" if current == head else "behind: run `linewatch db upgrade`"
    print(f"{shown}: revision {current or '(none)'}; head {head} ({state})")
    return 0
