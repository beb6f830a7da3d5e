"""Rows of the teaching messages: a feedback's answer, a taught-state change, a history frame."""

from __future__ import annotations

from broker.messages import Msg
from broker.teach_messages import FeedbackResult, HistoryFrame, TeachState
from services.store.rows import Planned, canonical


def _result(p: Planned, m: FeedbackResult) -> None:
    p.key = m.key
    p.add(
        "feedback_results",
        {
            "result_key": m.key,
            "feedback_id": m.feedback_id,
            "stream": canonical(m.stream),
            "action": m.action,
            "status": m.status,
            "reason": m.reason,
            "image": m.image,
            "image_bytes": len(m.image or b""),
            "version": m.version,
            "recall_before": m.recall_before,
            "recall_after": m.recall_after,
            "worker": m.worker,
            "ts": m.ts,
        },
    )


def _change(p: Planned, m: TeachState) -> None:
    p.key = m.key
    p.add(
        "teach_changes",
        {
            "change_key": m.key,
            "stream": canonical(m.stream),
            "version": m.version,
            "previous_version": m.previous_version,
            "action": m.action,
            "feedback_id": m.feedback_id,
            "actor": m.actor[:128],
            "model_version": m.model_version,
            "map_h": m.map_shape[0],
            "map_w": m.map_shape[1],
            "novelty_threshold": m.novelty_threshold,
            "previous_novelty_threshold": m.previous_novelty_threshold,
            "allowance": m.allowance,
            "previous_allowance": m.previous_allowance,
            "confirmed": m.confirmed,
            "previous_confirmed": m.previous_confirmed,
            "confirmed_keys": list(m.confirmed_keys),
            "previous_confirmed_keys": list(m.previous_confirmed_keys),
            "recall_before": m.recall_before,
            "recall_after": m.recall_after,
            "worker": m.worker,
            "ts": m.ts,
        },
    )


def _history(p: Planned, m: HistoryFrame) -> None:
    p.key = m.key
    p.add(
        "history_frames",
        {
            "frame_key": m.key,
            "stream": canonical(m.stream),
            "image": m.image,
            "image_bytes": len(m.image),
            "model_version": m.model_version,
            "worker": m.worker,
            "ts": m.ts,
        },
    )


def plan_teach(msg: Msg) -> Planned | None:
    """The rows of a teaching message, or None for any other message."""
    p = Planned()
    if isinstance(msg, FeedbackResult):
        _result(p, msg)
    elif isinstance(msg, TeachState):
        _change(p, msg)
    elif isinstance(msg, HistoryFrame):
        _history(p, msg)
    else:
        return None
    return p
