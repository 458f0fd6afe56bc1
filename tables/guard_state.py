"""guard_state: what the guard remembers per chat (dedupe ids, turn counter, open burst)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PendingBurst(BaseModel):
    """Messages waiting for the chat to go quiet, as InboundMessage JSON dicts."""

    messages: list[dict[str, Any]] = Field(default_factory=list)
    due_at: float = 0.0
    generation: int = 0


class GuardState(BaseModel):
    """One chat's guard memory: message ids seen (newest last), the next turn's ``seq``,
    the open burst and the generation counter that tells a burst's ticks apart."""

    seen: list[str] = Field(default_factory=list)
    next_seq: int = 0
    pending: PendingBurst | None = None
    generation: int = 0

    def has_seen(self, message_id: str) -> bool:
        return message_id in self.seen

    def remember(self, message_id: str, limit: int) -> None:
        self.seen.append(message_id)
        if len(self.seen) > limit:
            del self.seen[: len(self.seen) - limit]

    def edit_pending(self, message_id: str, body: str) -> bool:
        """Give message ``message_id`` of the open burst its edited ``body``.

        False (and nothing changes) when the message is not waiting in the open burst:
        it was answered already, or never joined a burst. The burst's due time stays: an
        edit changes what is said, it is not a new message.
        """
        if self.pending is None:
            return False
        for message in self.pending.messages:
            if message.get("message_id") == message_id:
                message["body"] = body
                return True
        return False

    def revoke_pending(self, message_id: str) -> bool:
        """Take message ``message_id`` out of the open burst (deleted for everyone).

        False when it is not waiting there. A burst left empty is closed without a turn
        (its timer's tick then finds nothing to close).
        """
        if self.pending is None:
            return False
        kept = [m for m in self.pending.messages if m.get("message_id") != message_id]
        if len(kept) == len(self.pending.messages):
            return False
        self.pending.messages = kept
        if not kept:
            self.pending = None
        return True


def guard_state_table(app: Any, partitions: int) -> Any:
    return app.Table(
        "guard_state",
        default=None,
        partitions=partitions,
        key_type=str,
        help="Per chat: recent message ids, next turn number, the open burst.",
    )
