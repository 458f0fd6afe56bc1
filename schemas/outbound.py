"""What the bot (or an operator) wants sent (topic ``wa.outbound``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from schemas.base import Record
from schemas.chat_ids import is_status_broadcast
from schemas.fields import ChatId, UtcDatetime, is_blank, utc_now

__all__ = ["OutboundKind", "OutboundMessage"]

OutboundKind = Literal["reply", "notice", "fallback", "manual"]


class OutboundMessage(Record):
    """One text to send. ``outbound_id`` is deterministic so the sink can refuse to send twice.

    v2 adds ``received_at``: when the message a reply answers was received (reply latency).
    """

    schema_version: int = Field(2, ge=1)

    outbound_id: str = Field(min_length=1)
    chat_id: ChatId
    account_id: ChatId
    text: str = Field(min_length=1)
    turn_id: str | None = Field(None, description="none for messages from the REST API")
    part: int = Field(0, ge=0, description="index of this part of a split reply")
    parts: int = Field(1, ge=1, description="number of parts of a split reply")
    reply_to_message_id: str | None = None
    kind: OutboundKind = "reply"
    created_at: UtcDatetime = Field(default_factory=utc_now)
    received_at: UtcDatetime | None = Field(
        None,
        description="replies: when the gateway received the turn's last message (the reply "
        "latency runs from it); none for notices and manual messages",
    )

    # Field validators, so a refusal names the field (the operator API answers with it).
    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if is_blank(text):
            raise ValueError("text is blank (whitespace and invisible characters only)")
        return text

    @field_validator("chat_id")
    @classmethod
    def _answerable(cls, chat_id: str) -> str:
        if is_status_broadcast(chat_id):
            raise ValueError("status@broadcast is never answered")
        return chat_id

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} is out of range for parts={self.parts}")
        return self
