"""One id per chat: WhatsApp Web, Baileys and the WhatsApp app spell the same person differently.

Everything keyed by chat (Kafka keys, tables, dedupe keys) must use the canonical form, or one
person ends up with two conversation windows and two rate-limit counters. The canonical form is
WhatsApp Web's: ``<digits>@c.us`` for a person, ``<id>@g.us`` for a group.

``@lid`` ids ("linked ids") are not phone numbers. They become ``<digits>@c.us`` only through a map
the gateway learns from WhatsApp (WA-JS ``WPP.contact.getPnLidEntry``); without an entry they stay
``<n>@lid``, which is still one stable id per person.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

__all__ = [
    "InvalidChatIdError",
    "canonical_chat_id",
    "is_group",
    "is_lid",
    "is_newsletter",
    "is_status_broadcast",
]

USER_SERVER = "c.us"
GROUP_SERVER = "g.us"
LID_SERVER = "lid"
NEWSLETTER_SERVER = "newsletter"
BROADCAST_SERVER = "broadcast"
STATUS_BROADCAST = "status@broadcast"

#: Baileys' spelling of a user; rewritten to ``c.us``.
_BAILEYS_USER_SERVER = "s.whatsapp.net"
#: Servers whose ids are kept as they are (only the server part is lowercased).
_OPAQUE_SERVERS = frozenset({GROUP_SERVER, NEWSLETTER_SERVER, BROADCAST_SERVER})

#: ``123`` or ``123:45`` (a linked device of user 123).
_USER_WITH_DEVICE = re.compile(r"(?P<user>[0-9]+)(?::[0-9]+)?")
#: A phone number as people type it: ``+49 170 1234567``, ``0049-170-123``, ``(030) 1234``.
_PHONE_NUMBER = re.compile(r"\+?[0-9 ()./-]*[0-9][0-9 ()./-]*")
_PHONE_PUNCTUATION = re.compile(r"[ +()./-]")
_WHITESPACE = re.compile(r"\s")


class InvalidChatIdError(ValueError):
    """A string that is not a WhatsApp chat id in any spelling this project knows."""

    def __init__(self, raw: object, why: str) -> None:
        super().__init__(f"invalid WhatsApp chat id {raw!r}: {why}")
        self.raw = raw
        self.why = why


def canonical_chat_id(raw: str, lid_map: Mapping[str, str] | None = None) -> str:
    """Return the one id this project uses for the chat or person ``raw`` names.

    ``lid_map`` maps ``<n>@lid`` ids to phone-number ids (any spelling this function accepts);
    an ``@lid`` id found there becomes ``<digits>@c.us``. Raises :class:`InvalidChatIdError`
    (a ``ValueError``) for anything that is not a chat id.
    """
    if lid_map is None and isinstance(raw, str):
        return _canonical_remembered(raw)
    return _canonical(raw, lid_map)


@functools.lru_cache(maxsize=65536)
def _canonical_remembered(raw: str) -> str:
    # Every record's validators canonicalize a few ids, mostly the same ones again: the
    # answer for a string never changes (errors are raised, not remembered).
    return _canonical(raw, None)


def _canonical(raw: str, lid_map: Mapping[str, str] | None) -> str:
    if not isinstance(raw, str):
        raise InvalidChatIdError(raw, f"expected a string, got {type(raw).__name__}")
    text = raw.strip()
    if not text:
        raise InvalidChatIdError(raw, "empty")
    if "@" not in text:
        return _from_phone_number(raw, text)

    user, _, server = text.rpartition("@")
    server = server.lower()
    if not user:
        raise InvalidChatIdError(raw, "no user part before '@'")
    if not server:
        raise InvalidChatIdError(raw, "no server part after '@'")
    if "@" in user or _WHITESPACE.search(user):
        raise InvalidChatIdError(raw, "the user part contains '@' or whitespace")

    if server in (USER_SERVER, _BAILEYS_USER_SERVER):
        return f"{_user_digits(raw, user, server)}@{USER_SERVER}"
    if server == LID_SERVER:
        lid = f"{_user_digits(raw, user, server)}@{LID_SERVER}"
        if lid_map is not None and lid in lid_map:
            return _mapped_phone_id(raw, lid_map[lid])
        return lid
    if server in _OPAQUE_SERVERS:
        return f"{user}@{server}"
    raise InvalidChatIdError(
        raw,
        f"unknown server {server!r} (expected c.us, s.whatsapp.net, lid, g.us, newsletter "
        "or broadcast)",
    )


def is_group(chat_id: str) -> bool:
    """True for a group chat (``@g.us``)."""
    return _server(chat_id) == GROUP_SERVER


def is_status_broadcast(chat_id: str) -> bool:
    """True for ``status@broadcast``: status posts, which a bot never answers."""
    return chat_id.strip().lower() == STATUS_BROADCAST


def is_newsletter(chat_id: str) -> bool:
    """True for a channel (``@newsletter``)."""
    return _server(chat_id) == NEWSLETTER_SERVER


def is_lid(chat_id: str) -> bool:
    """True for a linked id that no map has resolved to a phone number yet."""
    return _server(chat_id) == LID_SERVER


def _server(chat_id: str) -> str:
    return chat_id.strip().rpartition("@")[2].lower()


def _from_phone_number(raw: str, text: str) -> str:
    if not _PHONE_NUMBER.fullmatch(text):
        raise InvalidChatIdError(
            raw, "no '@server' part, and not a phone number (digits, optionally '+', spaces, '-')"
        )
    return f"{_PHONE_PUNCTUATION.sub('', text)}@{USER_SERVER}"


def _user_digits(raw: str, user: str, server: str) -> str:
    match = _USER_WITH_DEVICE.fullmatch(user)
    if match is None:
        raise InvalidChatIdError(
            raw, f"the user part of an @{server} id must be digits (optionally ':<device>')"
        )
    return match["user"]


def _mapped_phone_id(raw: str, mapped: str) -> str:
    try:
        phone_id = canonical_chat_id(mapped)
    except InvalidChatIdError as exc:
        raise InvalidChatIdError(raw, f"lid_map maps it to an invalid id: {exc.why}") from exc
    if not phone_id.endswith(f"@{USER_SERVER}"):
        raise InvalidChatIdError(raw, f"lid_map maps it to {mapped!r}, which is not a phone id")
    return phone_id
