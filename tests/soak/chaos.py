"""The chaos soak's stack and fault catalogue (tests/soak/test_chaos.py).

Topology: a private Mosquitto; `linewatch up` (store, feed, dispatcher, clustering and two
edge workers) on Postgres; the simulator publishing straight to the broker (its ground
truth holds only frames the broker acknowledged). Every component's link goes through a
loopback fault proxy (tests/faultproxy.py): one for the core services' MQTT link, one per
edge worker's MQTT link, one for every Postgres connection. Faults are drawn from
``FAULTS`` with a seeded RNG, each followed by a fault-free period.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultproxy import FaultProxy
from private_mosquitto import PrivateMosquitto

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2


def pids_matching(parent: int, *needles: str) -> list[int]:
    """Descendants of ``parent`` whose command line contains every needle (Linux /proc)."""
    children: dict[int, list[int]] = {}
    cmd: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(parent, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if all(n in cmd.get(pid, "") for n in needles):
            out.append(pid)
    return out


@dataclass
class Stack:
    site: str
    tmp: Path
    broker: PrivateMosquitto
    core: FaultProxy  # store, feed, dispatcher, clustering -> broker
    workers: list[FaultProxy]  # edge worker i -> broker
    pg: FaultProxy  # everything -> Postgres
    db_url: str  # through the Postgres fault proxy (what the stack uses)
    direct_db: str = ""  # straight to Postgres (what the checker reads)
    up: subprocess.Popen[bytes] | None = None
    sim: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def worker_ids(self) -> list[str]:
        return [f"E{self.site}{i}" for i in range(WORKERS)]

    def env(self) -> dict[str, str]:
        site = self.site
        return {
            **os.environ,
            "LINEWATCH_MQTT_URL": self.core.url("mqtt"),
            "LINEWATCH_DB_URL": self.db_url,
            "LINEWATCH_DATA_DIR": str(self.tmp / "var"),
            "LINEWATCH_STORE_NAME": site,
            "LINEWATCH_STORE_SITE": site,
            "LINEWATCH_CLUSTER_ID": f"c-{site}",
            "LINEWATCH_DISPATCHER_ID": f"dp-{site}",
            "LINEWATCH_WORKER_PREFIX": f"E{site}",
            "LINEWATCH_DISCOVER_TOPICS": json.dumps(
                [f"lw/v1/{site}/+/+/camera/+/frame", f"lw/v1/{site}/+/+/sensor/+"]
            ),
            "LINEWATCH_FEED_NAME": site,
            "LINEWATCH_FEED_PORT": "0",
            "LINEWATCH_CAMERA_QUEUE": "64",
            "LINEWATCH_STATUS_S": "2",
            "LINEWATCH_STORE_SWEEP_INTERVAL_S": "10",
        }

    def start_up(self, model: Path) -> None:
        def edge(i: int, wid: str) -> list[str]:
            url = f"LINEWATCH_MQTT_URL={self.workers[i].url('mqtt')}"
            cli = [sys.executable, "-m", "services.cli", "edge", "--id", wid]
            return ["env", url, *cli, "--model-dir", str(model)]

        extra = [{"name": f"edge-{i}", "argv": edge(i, w)} for i, w in enumerate(self.worker_ids)]
        (self.tmp / "extra.json").write_text(json.dumps(extra))
        env = {**self.env(), "LINEWATCH_UP_COMPONENTS": str(self.tmp / "extra.json")}
        out = (self.tmp / "up.out").open("wb")
        self.up = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--without", "edge-W1"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def start_sim(self, seconds: float, seed: int) -> None:
        env = {**self.env(), "LINEWATCH_MQTT_URL": self.broker.url}
        args = [
            sys.executable, "-m", "services.cli", "sim", "--site", self.site,
            "--lines", "2", "--stations", "2", "--sensors", "1", "--sensor-hz", "2",
            "--fps", "2", "--size", "224", "--pool", "6", "--seed", str(seed),
            "--defect-rate", "0.2", "--duration", str(seconds), "--progress", "0",
            "--truth", str(self.truth), "--wait-for", "store,dispatch,edge,cluster",
        ]  # fmt: skip
        out = (self.tmp / "sim.out").open("wb")
        self.sim = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def truth(self) -> Path:
        return self.tmp / "truth.jsonl"

    def records(self, kind: str) -> list[dict[str, Any]]:
        try:
            rows = [json.loads(x) for x in self.truth.read_text().splitlines() if x.strip()]
        except (OSError, ValueError):
            return []
        return [r for r in rows if r.get("kind") == kind]

    def stop(self) -> None:
        for p in (self.sim, self.up):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def logs(self) -> str:
        files = sorted((self.tmp / "var" / "log").glob("*.log"))
        files += [self.tmp / "up.out", self.tmp / "sim.out"]
        return "\n".join(
            f"==== {f.name}\n{f.read_text(errors='replace')[-2500:]}" for f in files if f.exists()
        )

    def kill(self, *needles: str) -> int:
        """SIGKILL the supervised process whose command line has every needle; `up` restarts
        it. Returns how many were killed."""
        assert self.up is not None
        pids = pids_matching(self.up.pid, "services.cli", *needles)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


Fault = Callable[[Stack, random.Random, threading.Event], dict[str, Any]]


def broker_kill(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    down = rng.uniform(1, 6)
    s.broker.kill()
    stop.wait(down)
    s.broker.start()
    return {"down_s": round(down, 1)}


def broker_restart(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    s.broker.stop()
    s.broker.start()
    return {}


def worker_kill(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    wid = rng.choice(s.worker_ids)
    return {"worker": wid, "killed": s.kill("edge", "--id", wid)}


def worker_partition(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    """Past the keepalive (5 s): the dispatcher moves its streams; nothing doubles."""
    i, held = rng.randrange(WORKERS), rng.uniform(4, 20)
    s.workers[i].blackhole("both")
    stop.wait(held)
    s.workers[i].heal()
    return {"worker": s.worker_ids[i], "held_s": round(held, 1)}


def link_flaps(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    """Five breaks 1-4 s apart of one link to the broker (a worker's or the core's)."""
    which = rng.randrange(WORKERS + 1)
    proxy = s.core if which == WORKERS else s.workers[which]
    cut = 0
    for _ in range(5):
        cut += proxy.cut()
        if stop.wait(rng.uniform(1, 4)):
            break
    return {"link": "core" if which == WORKERS else s.worker_ids[which], "connections_cut": cut}


def postgres_outage(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    down = rng.uniform(2, 15)
    s.pg.refuse(True)
    cut = s.pg.cut()
    stop.wait(down)
    s.pg.refuse(False)
    s.pg.heal()
    return {"down_s": round(down, 1), "connections_cut": cut}


def store_kill(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    return {"killed": s.kill("store")}


def dispatcher_kill(s: Stack, rng: random.Random, stop: threading.Event) -> dict[str, Any]:
    return {"killed": s.kill("dispatch")}


FAULTS: dict[str, Fault] = {
    "broker_kill": broker_kill,
    "broker_restart": broker_restart,
    "worker_kill": worker_kill,
    "worker_partition": worker_partition,
    "link_flaps": link_flaps,
    "postgres_outage": postgres_outage,
    "store_kill": store_kill,
    "dispatcher_kill": dispatcher_kill,
}


def run_faults(
    s: Stack, seed: int, until: float, stop: threading.Event, quiet: tuple[float, float]
) -> None:
    """Faults in a seeded random order until ``until`` (monotonic), each followed by a
    fault-free period of ``quiet`` seconds (uniform). Every fault is appended to
    ``s.events`` with its start (seconds since the first) and what it did."""
    rng, t0 = random.Random(seed), time.monotonic()
    names = sorted(FAULTS)
    while not stop.is_set() and time.monotonic() < until:
        if stop.wait(rng.uniform(*quiet)) or time.monotonic() >= until:
            return
        name = rng.choice(names)
        at = time.monotonic() - t0
        detail = FAULTS[name](s, rng, stop)
        s.events.append({"t": round(at, 1), "fault": name, **detail})
