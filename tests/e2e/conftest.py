"""Shared e2e fixture of the feed tests: real store + edge worker + feed processes on Mosquitto."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from edge_stack import Proc, Watcher, linewatch
from feed_e2e import FeedStack, _free_port, _healthy, _model_dir
from helpers import wait_for


@pytest.fixture(scope="session")
def feed_stack(mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedStack]:
    tmp = tmp_path_factory.mktemp("feed-e2e")
    site = f"t{uuid.uuid4().hex[:10]}"
    worker = f"E{site}"
    db = tmp / "history.db"
    port = _free_port()
    env = {
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DB_URL": f"sqlite:///{db}",
        "LINEWATCH_DATA_DIR": str(tmp),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_FEED_NAME": site,
        "LINEWATCH_FEED_PORT": str(port),
        "LINEWATCH_PROFILE": "demo",
    }
    model_dir = _model_dir(tmp)
    linewatch("db", "upgrade", env=env)
    name = f"e2e-operator-{site}"
    token = linewatch(
        "feed", "token", "create", "--role", "operator", "--name", name, env=env
    ).stdout.strip()
    streams = ",".join(f"{site}/L1/st-{c}/{c}" for c in ("c1", "c2"))
    procs = [
        Proc("store", ["store"], env, tmp),
        Proc("feed", ["feed"], env, tmp),
        Proc(
            "edge",
            ["edge", "--id", worker, "--streams", streams, "--model-dir", str(model_dir)],
            env,
            tmp,
        ),
    ]
    watcher = Watcher(mosquitto_url, f"w-{site}").start([worker, f"store-{site}", f"feed-{site}"])
    stack = FeedStack(
        site, worker, db, model_dir, f"http://127.0.0.1:{port}", token, name, watcher, procs
    )
    try:
        for p in procs:
            p.start()
        for who in (worker, f"store-{site}", f"feed-{site}"):
            watcher.wait_online(who)
        wait_for(lambda: _healthy(stack.url), 60, 0.2, what="feed /healthz")
        yield stack
    except BaseException:
        print(stack.tails())
        raise
    finally:
        watcher.stop()
        for p in reversed(procs):
            p.stop()
