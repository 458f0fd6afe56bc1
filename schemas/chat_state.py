"""Per-chat switches and counters (the value of the chat-state table)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.base import Record
from schemas.fields import ChatId, UtcDatetime

__all__ = ["ChatState"]


class ChatState(Record):
    """Whether and how the bot talks in one chat, and what it needs to stop loops and takeovers."""

    schema_version: int = Field(2, ge=1)
    chat_id: ChatId
    enabled: bool = True
    paused_until: UtcDatetime | None = Field(
        None, description="quiet until then, e.g. after the owner answered from the phone"
    )
    persona: str | None = Field(None, description="system-prompt override for this chat")
    model: str | None = Field(
        None, description="an account's LLM model override (account profiles only)"
    )
    rate_chat_per_minute: int | None = Field(
        None, ge=0, description="an account's per-chat reply limit override (account profiles only)"
    )
    consecutive_bot_replies: int = Field(0, ge=0)
    last_human_at: UtcDatetime | None = None
    last_bot_at: UtcDatetime | None = None
    notices_sent_at: UtcDatetime | None = None

    def is_paused(self, now: datetime) -> bool:
        """True while a pause is running at ``now`` (an aware datetime)."""
        return self.paused_until is not None and now < self.paused_until
