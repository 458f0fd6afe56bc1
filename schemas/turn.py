"""What the bot answers (topic ``chat.turns``): one validated message, or a coalesced burst."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from schemas.base import Record
from schemas.chat_ids import is_group
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["Turn"]


class Turn(Record):
    """One turn of a conversation: the messages a person sent before the bot answers.

    ``turn_id`` is deterministic (derived by the guard from the first message's dedupe key), so
    a replayed or redelivered turn has the same id and the same outbound ids downstream.

    v2 adds ``cut_chars``: characters the guard cut from the turn's messages to keep the turn
    within WABOT_LLM_MAX_MESSAGE_CHARS (each message cut on its own, the last kept first).
    """

    schema_version: int = Field(2, ge=1)

    turn_id: str = Field(min_length=1)
    chat_id: ChatId
    account_id: ChatId
    sender_id: ChatId
    seq: int = Field(ge=0, description="per-chat turn number")
    message_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="inner id.id of each message, in order"
    )
    text: str = Field(description='the coalesced bodies joined by "\\n"')
    cut_chars: int = Field(
        0, ge=0, description="characters cut from the bodies so the turn fits the LLM's limit"
    )
    is_group: bool
    quoted_message_id: str | None = None
    first_received_at: UtcDatetime
    last_received_at: UtcDatetime
    created_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.is_group != is_group(self.chat_id):
            raise ValueError(
                f"is_group={self.is_group} disagrees with chat_id {self.chat_id!r} "
                "(groups and only groups end with @g.us)"
            )
        if len(set(self.message_ids)) != len(self.message_ids):
            raise ValueError("message_ids contains duplicates")
        if self.last_received_at < self.first_received_at:
            raise ValueError("last_received_at is before first_received_at")
        return self
