"""What the gateway saw arrive on WhatsApp (topic ``wa.inbound``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.base import Record
from schemas.chat_ids import is_group
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["InboundEvent", "InboundMessage", "MediaInfo", "MessageType"]

#: WhatsApp Web's message types: WA-JS's ``MSG_TYPE`` enum (src/whatsapp/enums/MSG_TYPE.ts,
#: 4.6.0) plus the types its source uses besides (``poll_creation``, ``event_creation``,
#: ``ptv``); anything else arrives as ``unknown``.
MessageType = Literal[
    "chat",
    "image",
    "video",
    "audio",
    "ptt",
    "ptv",
    "document",
    "sticker",
    "location",
    "vcard",
    "multi_vcard",
    "revoked",
    "ciphertext",
    "reaction",
    "poll_creation",
    "event_creation",
    "protocol",
    "gp2",
    "notification",
    "notification_template",
    "group_notification",
    "broadcast_notification",
    "e2e_notification",
    "call_log",
    "payment",
    "oversized",
    "groups_v4_invite",
    "hsm",
    "template_button_reply",
    "product",
    "order",
    "list",
    "list_response",
    "interactive",
    "buttons_response",
    "native_flow",
    "unknown",
]

#: What an inbound record reports: a new message, or a change to an earlier one.
InboundEvent = Literal["message", "edit", "revoke", "reaction"]


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

    schema_version: int = Field(3, ge=1)
    event: InboundEvent = Field(
        "message",
        description="message: a new message; edit: body is the new text of target_message_id; "
        "revoke: target_message_id was deleted for everyone; reaction: `reaction` was put on "
        "target_message_id (empty: taken back). message_id is then the event's own id",
    )
    target_message_id: str | None = Field(
        None, min_length=1, description="the message an edit, revoke or reaction is about"
    )
    reaction: str | None = Field(None, description="the reaction's emoji; empty when taken back")
    subtype: str | None = Field(
        None, description="WhatsApp's subtype (gp2: add, remove, ...; protocol: message_edit, ...)"
    )
    quoted_from_me: bool = Field(False, description="the quoted message is one of ours")
    account_id: ChatId = Field(description="our own WhatsApp id")
    message_id: str = Field(min_length=1, description="the inner id.id of the message key")
    serialized_id: str | None = Field(None, description="id._serialized, when WhatsApp gave one")
    chat_id: ChatId
    sender_id: ChatId = Field(
        description="1:1 chat: the other person, or us when from_me; group: the author"
    )
    author_id: ChatId | None = Field(None, description="the author inside a group")
    sender_name: str | None = Field(
        None,
        description="the sender's name as WhatsApp Web knows it: the account's contact name "
        "for them, else their push name (WA-JS: msg.senderObj.name, msg.notifyName); "
        "none when unknown or when from_me",
    )
    chat_name: str | None = Field(
        None,
        description="the chat's title: a group's subject, or the contact name of the person "
        "in a 1:1 chat (WA-JS ChatModel: groupMetadata.subject, name, contact.name); none "
        "when WhatsApp Web shows only the number",
    )
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
        if (self.event == "message") == (self.target_message_id is not None):
            raise ValueError(
                "target_message_id is required for an edit, revoke or reaction, and only for those"
            )
        if self.sent_by_bot and not self.from_me:
            raise ValueError("sent_by_bot requires from_me: the bot sends from our own account")
        return self

    @property
    def dedupe_key(self) -> str:
        """Identifies one message across redeliveries, reconnects and ciphertext retries."""
        return f"{self.account_id}|{self.chat_id}|{self.message_id}"
