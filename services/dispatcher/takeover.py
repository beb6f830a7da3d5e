"""What a dispatcher taking the lead believes each worker holds (pure; no I/O, no locks).

Two sources disagree after a leader died: SQL (the decisions it recorded, written before
they were published) and the bus (what each live worker last announced in its status).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from broker.messages import WorkerStatus
from services.dispatcher.ports import Held


def merge_recorded(held: dict[str, Held], latest: Mapping[str, tuple[int, Sequence[str]]]) -> None:
    """SQL's latest assignment per worker replaces what the bus told us when it is newer."""
    for w, (e, streams) in latest.items():
        cur = held.get(w)
        if cur is None or e > cur.epoch:
            held[w] = Held(e, tuple(streams), {})


def trust_announced(held: dict[str, Held], status: Mapping[str, WorkerStatus]) -> None:
    """A leader killed between a move's revocations and its grants leaves SQL (written
    first) ahead of the workers: grants nobody received. What a live worker last
    announced (status epoch and streams) wins over a newer SQL row giving it streams it
    does not announce: the take-over places those again, with resume."""
    for w, st in status.items():
        cur = held.get(w)
        if cur is None or st.state == "offline" or st.epoch >= cur.epoch:
            continue
        if set(cur.streams) - set(st.streams):  # granted, never taken up
            held[w] = Held(st.epoch, tuple(st.streams), {})
