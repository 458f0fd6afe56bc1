"""What becomes of a message, by its WhatsApp type (:data:`FATES`): answered, answered when it
carries text, unreadable (one notice), ignored as a system message, or a placeholder."""

from __future__ import annotations

from typing import Literal

from schemas import MessageType

__all__ = ["FATES", "MessageFate"]

#: What becomes of a message, by its WhatsApp type:
#: ``text``: answered (a blank one is ``empty``); ``caption``: answered when it carries text
#: (a caption, a location's comment, a poll's question, a button's or list row's title),
#: else ``unreadable``; ``unreadable``: the bot cannot read it, so at most one notice per
#: chat and day; ``system``: not something a person wrote (WhatsApp's notifications, call
#: logs, protocol messages, the placeholder of a deleted message), ignored as
#: ``system_message``; ``placeholder``: ``ciphertext``, whose decrypted copy follows with
#: the same id.
MessageFate = Literal["text", "caption", "unreadable", "system", "placeholder"]

#: Every type of :data:`schemas.MessageType` (WA-JS's ``MSG_TYPE``) and its fate; a unit
#: test fails when a type has none. README.md lists the same table (WhatsApp section).
FATES: dict[MessageType, MessageFate] = {
    "chat": "text",
    "image": "caption",
    "video": "caption",
    "document": "caption",
    "location": "caption",
    "poll_creation": "caption",
    "event_creation": "caption",
    "groups_v4_invite": "caption",
    "hsm": "caption",
    "template_button_reply": "caption",
    "buttons_response": "caption",
    "list": "caption",
    "list_response": "caption",
    "interactive": "caption",
    "product": "caption",
    "order": "caption",
    "audio": "unreadable",
    "ptt": "unreadable",
    "ptv": "unreadable",
    "sticker": "unreadable",
    "vcard": "unreadable",
    "multi_vcard": "unreadable",
    "payment": "unreadable",
    "oversized": "unreadable",
    "native_flow": "unreadable",
    "unknown": "unreadable",
    "ciphertext": "placeholder",
    "revoked": "system",
    "reaction": "system",
    "protocol": "system",
    "gp2": "system",
    "notification": "system",
    "notification_template": "system",
    "group_notification": "system",
    "broadcast_notification": "system",
    "e2e_notification": "system",
    "call_log": "system",
}
