"""Plain messages from the page -> InboundMessage records; ids of the messages we send.

The page hands over what ``bridge.js`` made of WA-JS's MsgModel (``chat.new_message``) and of
its ``chat.msg_edited``, ``chat.msg_revoke`` and ``chat.new_reaction`` events. Everything here
is pure (no browser, no Kafka), so it is unit-tested on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from schemas import InboundMessage, MediaInfo, canonical_chat_id, is_group
from schemas.inbound import MessageType

__all__ = [
    "EVENT_KINDS",
    "KNOWN_TYPES",
    "event_from_page",
    "event_message_id",
    "find_own_send",
    "inbound_from_page",
    "inner_id",
    "lids_in",
    "message_id_for",
    "own_ack",
]

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


def inner_id(key: str) -> str:
    """The inner id of a message key: ``true_<chat>_<id>[_<participant>]`` -> ``<id>``.

    WA-JS's ``sendTextMessage`` resolves with ``id`` as the serialized key; events carry the
    inner ``id.id``. A string without ``_`` is taken as an inner id already.
    """
    parts = key.split("_")
    if len(parts) >= 3 and parts[0] in ("true", "false"):
        return parts[2]
    return key


def inbound_from_page(
    raw: Mapping[str, Any],
    *,
    account_id: str,
    sent_by_bot: bool,
    trace_id: str | None = None,
    lid_map: Mapping[str, str] | None = None,
    quoted_from_me: bool = False,
) -> InboundMessage:
    """Build the record for one page message; raises ``ValueError`` for a malformed one.

    ``raw`` is ``bridge.js``'s plain form of a MsgModel (``id``, ``chat``, ``from``,
    ``author``, ``body``, ``type``, ``t`` in seconds, ``mentioned``, ``quotedId``,
    ``quotedFromMe``, media fields, ``senderName`` and ``chatName``). ``lid_map``
    (``<n>@lid`` -> phone id) canonicalises every id in it, mentions included, so one person
    is one id whichever form WhatsApp used. ``quoted_from_me`` (or the page's
    ``quotedFromMe``) marks a reply to one of our messages. The names are trimmed and cut
    to :data:`MAX_NAME` characters; ours (``fromMe``) carry no sender name.
    """
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
    quoted = raw.get("quotedId") or None
    fields: dict[str, Any] = {
        "account_id": account_id,
        "message_id": str(raw.get("id") or ""),
        "serialized_id": raw.get("serialized") or None,
        "chat_id": chat,
        "sender_id": sender,
        "author_id": author if group else None,
        "sender_name": None if from_me else _name(raw.get("senderName")),
        "chat_name": _name(raw.get("chatName")),
        "from_me": from_me,
        "sent_by_bot": sent_by_bot and from_me,
        "is_group": group,
        "mentioned_ids": _unique(
            m for m in (_optional_id(x, lid_map) for x in raw.get("mentioned") or []) if m
        ),
        "body": body,
        "type": kind,
        "subtype": str(raw["subtype"]) if raw.get("subtype") else None,
        "has_media": media is not None,
        "media": media,
        "quoted_message_id": quoted,
        "quoted_from_me": bool(quoted) and (quoted_from_me or raw.get("quotedFromMe") is True),
        "wa_timestamp": _timestamp(raw.get("t")),
    }
    if trace_id:
        fields["trace_id"] = trace_id
    return InboundMessage(**fields)


#: What ``bridge.js`` emits besides new messages, and the event each becomes.
EVENT_KINDS: dict[str, str] = {"edit": "edit", "revoke": "revoke", "reaction": "reaction"}


def event_message_id(kind: str, target: str, *parts: object) -> str:
    """The ``message_id`` of an edit, revoke or reaction record: the event's own id.

    Derived from the original message's inner id and what makes the event distinct (an
    edit's new text and timestamp, a reaction's sender, emoji and timestamp), so the same
    event delivered twice (a reload, a catch-up) has the same id and the guard's dedupe drops
    the second, while a second edit of the same message gets a new one.
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:12].upper()
    return f"{target}-{kind}-{digest}" if parts else f"{target}-{kind}"


def event_from_page(
    kind: str,
    raw: Mapping[str, Any],
    *,
    account_id: str,
    lid_map: Mapping[str, str] | None = None,
) -> InboundMessage:
    """Build the record of an edit, revoke or reaction; raises ``ValueError`` when malformed.

    ``kind`` and ``raw`` as ``bridge.js`` emits them:

    * ``edit`` (WA-JS ``chat.msg_edited {chat, id, msg}``): the plain original message with
      its new ``body``, plus ``editT`` (``latestEditSenderTimestampMs``, ms) when known;
      record: ``event='edit'``, ``type='protocol'``, ``subtype='message_edit'``, ``body`` = the
      new text.
    * ``revoke`` (``chat.msg_revoke {id, refId, from, to, author, type}``): ``target`` =
      ``refId.id``, ``chat``, ``fromMe``, ``from``, ``author``, ``revokeType`` (``revoke``,
      ``sender_revoke``, ``admin_revoke``); record: ``type='protocol'``, ``subtype`` = that.
    * ``reaction`` (``chat.new_reaction {id, msgId, reactionText, sender, timestamp}``):
      ``target`` = ``msgId.id``, ``chat`` = ``msgId.remote``, ``sender``, ``fromMe``,
      ``reaction`` ('' = taken back), ``t``; record: ``type='reaction'``.

    Every id goes through ``lid_map`` as in :func:`inbound_from_page`.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    chat = canonical_chat_id(str(raw.get("chat") or ""), lid_map)
    group = is_group(chat)
    who = raw.get("sender") if kind == "reaction" else raw.get("author") or raw.get("from")
    person = _optional_id(who, lid_map)
    if person is not None and is_group(person):
        person = None  # a revoke's ``from`` is the group; its author says who
    from_me = bool(raw.get("fromMe")) or person == account_id
    if from_me:
        sender = account_id
    elif person is not None:
        sender = person
    elif not group:
        sender = chat
    else:
        raise ValueError(f"group {kind} on {raw.get('target') or raw.get('id')!r} has no author")
    author = sender if group else None
    timestamp = raw.get("editT") if kind == "edit" else raw.get("t")
    fields: dict[str, Any] = {
        "account_id": account_id,
        "chat_id": chat,
        "sender_id": sender,
        "author_id": author,
        "from_me": from_me,
        "is_group": group,
        "event": EVENT_KINDS[kind],
        "has_media": False,
        "wa_timestamp": _timestamp(timestamp),
    }
    if kind == "edit":
        target = str(raw.get("id") or "")
        body = str(raw.get("body") or raw.get("caption") or "")
        fields |= {
            "target_message_id": target,
            "message_id": event_message_id("edit", target, raw.get("editT") or "", body),
            "body": body,
            "type": "protocol",
            "subtype": "message_edit",
        }
    elif kind == "revoke":
        target = str(raw.get("target") or "")
        fields |= {
            "target_message_id": target,
            "message_id": event_message_id("revoke", target),
            "type": "protocol",
            "subtype": str(raw.get("revokeType") or "revoke"),
        }
    else:
        target = str(raw.get("target") or "")
        emoji = str(raw.get("reaction") or "")
        fields |= {
            "target_message_id": target,
            "message_id": event_message_id("reaction", target, sender, emoji, raw.get("t") or ""),
            "reaction": emoji,
            "type": "reaction",
        }
    if not target:
        raise ValueError(f"{kind} without the message it is about")
    return InboundMessage(**fields)


def lids_in(raw: Mapping[str, Any]) -> set[str]:
    """Every ``<n>@lid`` id a page message or event names (chat, sender, author, mentions,
    the quoted message's author): what the gateway must resolve before producing it."""
    values: list[object] = [raw.get(k) for k in ("chat", "from", "author", "sender")]
    values += list(raw.get("mentioned") or [])
    values.append(raw.get("quotedParticipant"))
    found = set()
    for value in values:
        if isinstance(value, str) and value.strip().lower().endswith("@lid"):
            try:
                found.add(canonical_chat_id(value))
            except ValueError:
                continue
    return found


def find_own_send(
    recent: Iterable[Mapping[str, Any]],
    *,
    wa_id: str,
    text: str,
    since: float,
    taken: Callable[[str], bool] = lambda _id: False,
) -> str | None:
    """The id under which a send already reached the chat, or None.

    ``recent`` are the chat's last messages from us as ``bridge.js``'s ``recentOwn`` gives
    them (``{id, body, t, ack}``, ``t`` in seconds). A message counts when it has the id we
    asked for (``wa_id``), or, because WhatsApp Web may assign its own id, when it has our
    exact ``text``, was written no earlier than ``since`` (the outbound record's creation,
    epoch seconds, less :data:`SEND_CLOCK_SLACK_S`; WhatsApp's ``t`` has whole seconds) and is
    not ``taken`` (already known as another outbound record's message). A send WhatsApp
    refused (``ack`` -1: it stays in the chat, marked failed) does not count: it never
    reached the recipient, so sending again is no duplicate.
    """
    by_text: str | None = None
    for message in recent:
        found = str(message.get("id") or "")
        if not found or _failed(message):
            continue
        if found == wa_id:
            return found
        t = message.get("t")
        if (
            by_text is None
            and message.get("body") == text
            and isinstance(t, int | float)
            and t >= since - SEND_CLOCK_SLACK_S
            and not taken(found)
        ):
            by_text = found
    return by_text


def own_ack(recent: Iterable[Mapping[str, Any]], wa_id: str) -> int:
    """The ack of our message ``wa_id`` among ``recent`` (as for :func:`find_own_send`);
    0 when it is not there or carries none (-1 failed, 0 waiting, 1 the server has it...)."""
    for message in recent:
        if str(message.get("id") or "") == wa_id:
            ack = message.get("ack")
            return ack if isinstance(ack, int) and not isinstance(ack, bool) else 0
    return 0


def _failed(message: Mapping[str, Any]) -> bool:
    ack = message.get("ack")
    return isinstance(ack, int) and not isinstance(ack, bool) and ack < 0


#: How much earlier than its outbound record a message may be stamped and still count as
#: that record's send (WhatsApp's ``t`` is whole seconds, the worker's clock may differ).
SEND_CLOCK_SLACK_S = 2.0


def _timestamp(value: object) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        seconds = value / 1000 if value > 100_000_000_000 else value  # ms from some events
        return datetime.fromtimestamp(float(seconds), UTC)
    return datetime.now(UTC)


#: The longest name a record carries (WhatsApp caps push names and subjects far below it).
MAX_NAME = 200


def _name(value: object) -> str | None:
    """A person's or a group's name from the page: trimmed, at most :data:`MAX_NAME`
    characters, None when absent or blank."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    return text[:MAX_NAME] or None


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


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
