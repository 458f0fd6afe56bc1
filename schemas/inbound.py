"""What the gateway saw arrive on WhatsApp (topic ``wa.inbound``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.base import Record
from schemas.chat_ids import is_group
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["InboundMessage", "MediaInfo", "MessageType"]

#: WhatsApp Web's message types; anything else arrives as ``unknown``.
MessageType = Literal[
    "chat",
    "image",
    "video",
    "audio",
    "ptt",
    "document",
    "sticker",
    "location",
    "vcard",
    "revoked",
    "ciphertext",
    "reaction",
    "poll_creation",
    "unknown",
]


class MediaInfo(BaseModel):
    """What is known about a message's media. The bytes themselves never travel on a topic.

    A value inside :class:`InboundMessage`, not a record of its own: it has the records' strictness
    (frozen, no unknown fields) but no ``trace_id`` or ``schema_version`` of its own.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mimetype: str = Field(min_length=1)
    size: int | None = Field(None, ge=0, description="bytes")
    filename: str | None = None
    caption: str | None = None
    duration_s: float | None = Field(None, ge=0)


class InboundMessage(Record):
    """One WhatsApp message event, as plain data, with canonical ids.

    ``message_id`` is the inner ``id.id``; with the account and chat it is the dedupe key
    (``_serialized`` vanished on one WhatsApp Web build, and the ciphertext placeholder and the
    decrypted message share one id).
    """

    account_id: ChatId = Field(description="our own WhatsApp id")
    message_id: str = Field(min_length=1, description="the inner id.id of the message key")
    serialized_id: str | None = Field(None, description="id._serialized, when WhatsApp gave one")
    chat_id: ChatId
    sender_id: ChatId = Field(
        description="1:1 chat: the other person, or us when from_me; group: the author"
    )
    author_id: ChatId | None = Field(None, description="the author inside a group")
    from_me: bool
    sent_by_bot: bool = Field(False, description="set by the gateway for messages the bot sent")
    is_group: bool
    mentioned_ids: list[ChatId] = Field(default_factory=list)
    body: str = Field("", description="text, or the caption of media")
    type: MessageType
    has_media: bool
    media: MediaInfo | None = None
    quoted_message_id: str | None = None
    wa_timestamp: UtcDatetime = Field(description="WhatsApp's t; seconds since epoch accepted")
    received_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.is_group != is_group(self.chat_id):
            raise ValueError(
                f"is_group={self.is_group} disagrees with chat_id {self.chat_id!r} "
                "(groups and only groups end with @g.us)"
            )
        if is_group(self.sender_id):
            raise ValueError(
                f"sender_id {self.sender_id!r} is a group; in a group the sender is the author"
            )
        if self.has_media and self.media is None:
            raise ValueError("has_media is true but media is missing")
        if self.sent_by_bot and not self.from_me:
            raise ValueError("sent_by_bot requires from_me: the bot sends from our own account")
        return self

    @property
    def dedupe_key(self) -> str:
        """Identifies one message across redeliveries, reconnects and ciphertext retries."""
        return f"{self.account_id}|{self.chat_id}|{self.message_id}"
