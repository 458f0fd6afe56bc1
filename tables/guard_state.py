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


def guard_state_table(app: Any, partitions: int) -> Any:
    return app.Table(
        "guard_state",
        default=None,
        partitions=partitions,
        key_type=str,
        help="Per chat: recent message ids, next turn number, the open burst.",
    )
