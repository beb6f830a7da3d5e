"""`linewatch feed [run] [--host H] [--port P]` and `linewatch feed token create|list|revoke`."""

from __future__ import annotations

import argparse
import logging
import sys

from services.feed.settings import FeedSettings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linewatch feed", description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    run = sub.add_parser("run", help="serve the HTTP API, SSE stream and web page (default)")
    for target in (p, run):
        target.add_argument("--host", help="bind address [LINEWATCH_FEED_HOST, 127.0.0.1]")
        target.add_argument("--port", type=int, help="port [LINEWATCH_FEED_PORT, 8080]")
    tok = sub.add_parser("token", help="API tokens (only their sha256 is stored)")
    tsub = tok.add_subparsers(dest="tcmd", required=True)
    create = tsub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--role", required=True, choices=("operator", "viewer"))
    create.add_argument("--name", help="who holds it; recorded as the actor of their writes")
    tsub.add_parser("list", help="list tokens (names, roles; never the tokens)")
    revoke = tsub.add_parser("revoke", help="revoke every token with this name")
    revoke.add_argument("--name", required=True)
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from broker.config import load_settings
    from services.store.engine import SchemaBehind, make_engine, require_head

    settings = load_settings(
        FeedSettings, feed_host=getattr(args, "host", None), feed_port=getattr(args, "port", None)
    )
    logging.getLogger().setLevel(settings.log_level)
    engine = make_engine(settings.db_url)
    try:
        require_head(engine)
    except SchemaBehind as exc:
        print(f"linewatch feed: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "token":
        return _token(args, engine)
    return serve(settings, engine)


def _token(args: argparse.Namespace, engine: object) -> int:
    from services.feed import auth
    from services.store import queries
    from services.store.engine import writer

    if args.tcmd == "create":
        name = args.name or f"{args.role}-{auth.new_token()[4:12]}"
        if not 1 <= len(name) <= 128 or not name.isprintable():
            print("linewatch feed token: --name is 1-128 printable characters", file=sys.stderr)
            return 2
        print(auth.create(engine, args.role, name))  # type: ignore[arg-type]
        print(f"created {args.role} token for {name!r}; it is shown only now", file=sys.stderr)
        return 0
    with writer(engine).begin() as conn:  # type: ignore[arg-type]
        if args.tcmd == "list":
            for t in queries.list_tokens(conn):
                state = "revoked" if t["revoked_at"] else "active"
                print(f"{t['id']}\t{t['name']}\t{t['role']}\t{state}\t{t['created_at']:%F %T}")
            return 0
        n = queries.revoke_token(conn, args.name)
    print(f"revoked {n} token(s) named {args.name!r}", file=sys.stderr)
    return 0 if n else 1


def serve(settings: FeedSettings, engine: object) -> int:
    """Run uvicorn until SIGTERM/SIGINT; an MQTT transport (with a Last Will) for requests."""
    import uvicorn

    from services.feed.app import create_app

    transport, liveness = None, None
    if settings.feed_mqtt:
        from broker.liveness import Liveness
        from broker.mqtt import MqttError, connect

        name = f"feed-{settings.feed_name}"
        transport = connect(settings, name)
        liveness = Liveness(transport, name, "feed", settings.data_dir / "state")
        try:
            transport.start()
        except MqttError as exc:
            print(
                f"linewatch feed: {exc} (LINEWATCH_FEED_MQTT=false runs without the bus)",
                file=sys.stderr,
            )
            return 1
        liveness.birth()
    app = create_app(settings, engine=engine, transport=transport)  # type: ignore[arg-type]
    log.info("feed on http://%s:%d/ %s", settings.feed_host, settings.feed_port, settings.summary())
    try:
        uvicorn.run(
            app,
            host=settings.feed_host,
            port=settings.feed_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        if liveness is not None and transport is not None:
            liveness.death()
            transport.stop()
    return 0
