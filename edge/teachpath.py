"""The edge worker's side of operators' feedback: apply it to the camera's taught state, answer
with a ``FeedbackResult`` (the frame at model-input size) and publish every change as the
camera's retained ``TeachState`` (docs/contract.md, "Feedback and teaching")."""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from broker.messages import utcnow
from broker.teach_messages import FeedbackControl, FeedbackResult, FeedbackStatus, TeachState
from broker.topics import StreamRef, feedback_result_topic, teach_topic
from broker.transport import Inbound
from edge.modelswitch import SwitchingPipeline
from edge.outputs import Outputs
from edge.teach import TeachError
from edge.teachbook import Change, TeachBook

log = logging.getLogger(__name__)


def png(pixels: np.ndarray | None) -> bytes | None:
    if pixels is None:
        return None
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class TeachPath:
    """Handles ``FeedbackControl`` and retained ``TeachState`` messages of assigned cameras."""

    def __init__(self, pipeline: SwitchingPipeline, out: Outputs, worker: str) -> None:
        self.pipeline, self.out, self.worker = pipeline, out, worker

    def _book(self) -> tuple[TeachBook, str]:
        pipe = self.pipeline.current
        if pipe.teach is None:
            raise TeachError("not_teachable", "this worker's pipeline keeps no taught state")
        return pipe.teach, pipe.runner.version

    def adopt(self, msg: Inbound, state: TeachState, stream: StreamRef) -> None:
        """A camera's retained state (at assignment, or our own echo): take it when newer."""
        try:
            book, version = self._book()
        except TeachError:
            msg.ack()
            return
        if state.model_version != version:
            log.info(
                "taught state of %s is for model %s, not %s: not adopted",
                stream.key,
                state.model_version,
                version,
            )
        elif book.adopt(stream.key, state.target()):
            log.info("camera %s: taught state v%d adopted", stream.key, state.version)
        msg.ack()

    def control(self, msg: Inbound, ctl: FeedbackControl, stream: StreamRef) -> None:
        key = f"{stream.key}#fb:{ctl.request_id[:200]}"
        if self.out.was_done(key):
            msg.ack()  # a redelivered request: applied once already
            return
        book, version = self._book()
        configured = self.pipeline.current.thresholds.get(stream.key).novelty
        status: FeedbackStatus = "kept"
        reason, change, image = "", None, None
        try:
            if ctl.action == "rollback":
                assert ctl.target is not None
                change = book.restore(stream.key, ctl.target)
            else:
                assert ctl.frame_key is not None
                image = png(book.frame(stream.key, ctl.frame_key)[1])
                if ctl.label == "not_a_defect":
                    change = book.teach(
                        stream.key, ctl.frame_key, configured, force=ctl.action == "approve"
                    )
                    status = "held" if change.held else "applied"
                    if change.held:
                        reason = (
                            f"recall on confirmed defects would fall from "
                            f"{change.recall_before:.3f} to {change.recall_after:.3f}"
                        )
                elif ctl.label == "confirmed":
                    change, status = book.confirm(stream.key, ctl.frame_key), "applied"
        except TeachError as exc:
            status, reason = "rejected", f"{exc.reason}: {exc.detail}"
        pending = self.out.open_ack(msg, key)
        applied = (
            change is not None and not change.held and change.after.version != change.before.version
        )
        if applied:
            assert change is not None
            state = self._state(stream, ctl, change, version)
            self.out.publish(teach_topic(stream), state, pending, retain=True)
            log.info(
                "camera %s: taught state v%d (%s by %s)",
                stream.key,
                state.version,
                state.action,
                ctl.actor,
            )
        if ctl.feedback_id is not None and ctl.action != "rollback":
            result = FeedbackResult(
                key=f"fb:{ctl.feedback_id}:{ctl.action}",
                stream=stream.key,
                feedback_id=ctl.feedback_id,
                action="approve" if ctl.action == "approve" else "feedback",
                status=status,
                reason=reason[:1000],
                image=image,
                version=change.after.version if applied and change is not None else None,
                recall_before=change.recall_before if change is not None else None,
                recall_after=change.recall_after if change is not None else None,
                worker=self.worker,
                ts=utcnow(),
            )
            self.out.publish(feedback_result_topic(stream), result, pending)
        pending.seal()

    def _state(
        self, stream: StreamRef, ctl: FeedbackControl, change: Change, version: str
    ) -> TeachState:
        b, a = change.before, change.after
        action = {"not_a_defect": "teach", "confirmed": "confirm"}.get(ctl.label or "", "rollback")
        return TeachState(
            key=f"{stream.key}#teach:{a.version}:{ctl.request_id[:100]}",
            stream=stream.key,
            version=a.version,
            previous_version=b.version,
            action="rollback" if ctl.action == "rollback" else action,  # type: ignore[arg-type]
            feedback_id=ctl.feedback_id,
            actor=ctl.actor,
            model_version=version,
            map_shape=a.shape or b.shape or (1, 1),
            novelty_threshold=a.novelty,
            previous_novelty_threshold=b.novelty,
            allowance=a.allowance_bytes(),
            previous_allowance=b.allowance_bytes(),
            confirmed=a.confirmed_bytes(),
            previous_confirmed=b.confirmed_bytes(),
            confirmed_keys=a.confirmed_keys,
            previous_confirmed_keys=b.confirmed_keys,
            recall_before=change.recall_before,
            recall_after=change.recall_after,
            worker=self.worker,
            ts=utcnow(),
        )
