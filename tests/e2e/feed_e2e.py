"""Helpers of the feed e2e tests: the process stack, the model, frames the model flags."""

from __future__ import annotations

import io
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx
from edge_stack import Proc, Watcher, ensure_fast_model, query
from helpers import wait_for

from broker.topics import StreamRef


@dataclass
class FeedStack:
    """The running processes, the operator token, and the feed's URL."""

    site: str
    worker: str
    db: Path
    model_dir: Path
    url: str
    token: str
    token_name: str
    watcher: Watcher
    procs: list[Proc]

    def camera(self, name: str) -> StreamRef:
        return StreamRef.camera(self.site, "L1", f"st-{name}", name)

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.procs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _model_dir(tmp: Path) -> Path:
    """The fast test model when it can be built here (or LINEWATCH_TEST_EDGE_MODEL names
    one); otherwise the tiny ONNX test model with the same input/output names."""
    from services.cli import resolve

    if os.environ.get("LINEWATCH_TEST_EDGE_MODEL") or resolve("model") is not None:
        return ensure_fast_model()
    import edge_tinymodel

    print("feed e2e: `linewatch model` is not available; using the tiny test model")
    return edge_tinymodel.build(tmp / "tiny-model")


def defect_frames(model_dir: Path, n: int) -> list[bytes]:
    """``n`` encoded frames of defective parts, sized for the model in ``model_dir``."""
    from edge.model.card import load_card

    card = load_card(model_dir)
    if card.name == "tiny-test":
        import edge_tinymodel

        return [edge_tinymodel.frame("defect", seed=i) for i in range(n)]
    from edge.model.synthetic import iter_samples

    out = []
    for smp in iter_samples(777, n, size=card.input.size, defect_fraction=1.0):
        buf = io.BytesIO()
        smp.image.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def flag_everything(stack: FeedStack, cam: StreamRef) -> None:
    """Through the feed's own API, lower the camera's thresholds until every frame is flagged
    (the fast test model is built for speed, not recall), and wait until the worker applied
    the change and the store recorded it. Exercises PUT /api/cameras/{id}/thresholds e2e."""
    short = f"{cam.site}/{cam.line}/{cam.station}/{cam.name}"
    r = httpx.put(
        f"{stack.url}/api/cameras/{short}/thresholds",
        json={
            "defect_threshold": 1e-6,
            "novelty_threshold": 1e-6,
            "reason": "e2e: flag every frame",
        },
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    wait_for(
        lambda: (
            query(stack.db, "SELECT actor FROM threshold_changes WHERE stream = ?", cam.key)
            == [(stack.token_name,)]
        ),
        60,
        0.2,
        what=f"threshold change of {cam.key} applied and stored",
    )


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
