"""Dead-letter rows: those workers and services publish, and those the store records itself."""

from __future__ import annotations

import hashlib

from broker.messages import DeadLetter, utcnow
from services.store.repo import Row

COMPONENT = "store"


def dead_letter_row(dl: DeadLetter) -> Row:
    return {
        "dl_key": dl.key[:600],
        "component": dl.component,
        "topic": dl.topic[:512],
        "reason": dl.reason[:64],
        "detail": dl.detail,
        "payload_size": dl.payload_size,
        "payload_head": bytes(dl.payload_head),
        "ts": dl.ts,
    }


def store_dead_letter(key: str, topic: str, reason: str, detail: str, payload: bytes) -> Row:
    """A dead letter the store itself records (stale epoch, store error, too-large evidence)."""
    digest = hashlib.sha256(f"{reason}\x00{key}".encode("utf-8", "backslashreplace"))
    return {
        "dl_key": f"dl:{COMPONENT}:{reason}:{digest.hexdigest()[:32]}",
        "component": COMPONENT,
        "topic": topic[:512],
        "reason": reason[:64],
        "detail": detail[:300],
        "payload_size": len(payload),
        "payload_head": bytes(payload[:64]),
        "ts": utcnow(),
    }
