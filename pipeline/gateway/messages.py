"""Plain messages from the page -> InboundMessage records; ids of the messages we send.

The page hands over what ``bridge.js`` made of WA-JS's MsgModel. Everything here is pure
(no browser, no Kafka), so it is unit-tested on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas import InboundMessage, MediaInfo, canonical_chat_id, is_group
from schemas.inbound import MessageType

__all__ = ["KNOWN_TYPES", "inbound_from_page", "message_id_for"]

KNOWN_TYPES: frozenset[str] = frozenset(MessageType.__args__)  # type: ignore[attr-defined]
_MEDIA_TYPES = frozenset({"image", "video", "audio", "ptt", "document", "sticker"})


def message_id_for(account_id: str, outbound_id: str) -> str:
    """The WhatsApp message id we give the send of ``outbound_id``.

    Derived, not random: after a crash between sending and recording the send, the gateway
    looks for this id in the chat's last messages and does not send again. Shaped like
    WhatsApp Web's own ids ("3EB0" and hex digits, 20 characters).
    """
    digest = hashlib.sha256(f"{account_id}|{outbound_id}".encode()).hexdigest()
    return "3EB0" + digest[:16].upper()


def inbound_from_page(
    raw: Mapping[str, Any],
    *,
    account_id: str,
    sent_by_bot: bool,
    trace_id: str | None = None,
    lid_map: Mapping[str, str] | None = None,
) -> InboundMessage:
    """Build the record for one page message; raises ``ValueError`` for a malformed one."""
    chat = canonical_chat_id(str(raw.get("chat") or ""), lid_map)
    from_me = bool(raw.get("fromMe"))
    group = is_group(chat)
    author = _optional_id(raw.get("author"), lid_map) if group else None
    if group and author is None and not from_me:
        raise ValueError(f"group message {raw.get('id')!r} has no author")
    if from_me:
        sender = account_id
    elif group:
        sender = author or account_id
    else:
        sender = canonical_chat_id(str(raw.get("from") or chat), lid_map)
    kind = str(raw.get("type") or "unknown")
    if kind not in KNOWN_TYPES:
        kind = "unknown"
    media = _media(raw) if kind in _MEDIA_TYPES or raw.get("isMedia") else None
    body = str(raw.get("body") or "")
    if media is not None:
        # WhatsApp keeps a media message's text in the caption; body may hold a thumbnail.
        body = str(raw.get("caption") or "")
    timestamp = raw.get("t")
    fields: dict[str, Any] = {
        "account_id": account_id,
        "message_id": str(raw.get("id") or ""),
        "serialized_id": raw.get("serialized") or None,
        "chat_id": chat,
        "sender_id": sender,
        "author_id": author if group else None,
        "from_me": from_me,
        "sent_by_bot": sent_by_bot and from_me,
        "is_group": group,
        "mentioned_ids": [
            m for m in (_optional_id(x, lid_map) for x in raw.get("mentioned") or []) if m
        ],
        "body": body,
        "type": kind,
        "has_media": media is not None,
        "media": media,
        "quoted_message_id": raw.get("quotedId") or None,
        "wa_timestamp": (
            datetime.fromtimestamp(float(timestamp), UTC)
            if isinstance(timestamp, int | float)
            else datetime.now(UTC)
        ),
    }
    if trace_id:
        fields["trace_id"] = trace_id
    return InboundMessage(**fields)


def _optional_id(value: object, lid_map: Mapping[str, str] | None) -> str | None:
    if not value:
        return None
    try:
        return canonical_chat_id(str(value), lid_map)
    except ValueError:
        return None


def _media(raw: Mapping[str, Any]) -> MediaInfo:
    return MediaInfo(
        mimetype=str(raw.get("mimetype") or "application/octet-stream"),
        size=raw.get("size") if isinstance(raw.get("size"), int) else None,
        filename=raw.get("filename") or None,
        caption=raw.get("caption") or None,
        duration_s=raw.get("duration") or None,
    )
