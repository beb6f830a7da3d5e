"""Child process for bus fault tests: a subscriber that never acks, or a process with Liveness."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from broker.liveness import Liveness
from broker.mqtt import MqttTransport
from broker.transport import Inbound


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


def noack(args: argparse.Namespace) -> None:
    """Subscribe with a persistent session; report each message; never acknowledge."""
    t = MqttTransport(args.url, args.client_id, keepalive=args.keepalive)

    def handler(msg: Inbound) -> None:
        say(
            event="message",
            topic=msg.topic,
            payload=msg.payload.hex(),
            dup=msg.dup,
            receipt=msg.receipt,
            qos=msg.qos,
        )

    t.subscribe(args.topic, handler)
    t.start()
    say(event="ready", protocol=t.protocol)


def liveness(args: argparse.Namespace) -> None:
    """Set the Last Will, connect, publish the birth; then idle until killed."""
    t = MqttTransport(args.url, args.client_id, keepalive=args.keepalive)
    live = Liveness(t, args.worker, "edge", Path(args.state_dir))
    t.start()
    if not live.birth().wait(5):
        say(event="error", detail="birth not acknowledged")
        sys.exit(1)
    say(event="ready", counter=live.counter, protocol=t.protocol)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["noack", "liveness"])
    p.add_argument("--url", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--keepalive", type=int, default=5)
    p.add_argument("--topic", default="")
    p.add_argument("--worker", default="")
    p.add_argument("--state-dir", default="")
    args = p.parse_args()
    {"noack": noack, "liveness": liveness}[args.mode](args)
    threading.Event().wait()  # idle until the test kills us


if __name__ == "__main__":
    main()
