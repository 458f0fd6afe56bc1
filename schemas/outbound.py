"""What the bot (or an operator) wants sent (topic ``wa.outbound``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Record
from schemas.chat_ids import is_status_broadcast
from schemas.fields import ChatId, UtcDatetime, utc_now

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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.text.strip():
            raise ValueError("text is blank")
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} is out of range for parts={self.parts}")
        if is_status_broadcast(self.chat_id):
            raise ValueError("status@broadcast is never answered")
        return self
