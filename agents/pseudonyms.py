"""Keyed pseudonyms for the analytics topic (pure functions; not an agent itself).

A pseudonym is ``"p:"`` followed by the first 32 hex digits (128 bits) of
HMAC-SHA256(key, id). Without the key nobody can tell which number hides behind it, not even
by hashing every phone number of a country (which an unkeyed hash would allow: phone numbers
have few enough digits to enumerate). With the key the operator can recompute the pseudonym of
a given id to find its events. Chat and person ids are canonicalized first
(:func:`schemas.canonical_chat_id`), so ``491701234567@s.whatsapp.net`` and
``491701234567@c.us`` are one pseudonym. An ``@lid`` id that the gateway could not map to a
phone number stays its own id and so gets its own pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from schemas import InvalidChatIdError, canonical_chat_id

__all__ = ["PSEUDONYM_PREFIX", "Pseudonymizer"]

PSEUDONYM_PREFIX = "p:"
#: Hex digits of the HMAC kept in a pseudonym (128 bits).
DIGEST_HEX = 32
#: ``@`` and the user part of an id, as WhatsApp writes a mention into a message's text.
_MENTION = re.compile(r"@([0-9]{5,})")


class Pseudonymizer:
    """Turns ids into keyed pseudonyms; the key never appears in its repr.

    ``key``: the secret (bytes, or text encoded as UTF-8); raises ``ValueError`` when empty.
    """

    __slots__ = ("_mac",)

    def __init__(self, key: bytes | str) -> None:
        secret = key.encode() if isinstance(key, str) else key
        if not secret:
            raise ValueError("the pseudonym key is empty")
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<hidden>)"

    def ref(self, value: str) -> str:
        """The pseudonym of an opaque id (a turn, outbound, message or trace id) as given."""
        mac = self._mac.copy()
        mac.update(value.encode())
        return PSEUDONYM_PREFIX + mac.hexdigest()[:DIGEST_HEX]

    def chat(self, chat_id: str) -> str:
        """The pseudonym of a chat or person id in any spelling; raises
        :class:`schemas.InvalidChatIdError` (a ``ValueError``) for a string that is not one."""
        return self.ref(canonical_chat_id(chat_id))

    def scrub(self, text: str, mentioned_ids: Iterable[str] = ()) -> str:
        """``text`` with each ``@<digits>`` mention replaced by ``@`` and the pseudonym.

        WhatsApp writes a mention into the text as ``@`` and the user part of the id; the
        matching id of ``mentioned_ids`` is used (it may be an ``@lid``), else the digits are
        taken for a phone number. Other numbers a person typed are left as they are.
        """
        by_user: dict[str, str] = {}
        for mentioned in mentioned_ids:
            try:
                canonical = canonical_chat_id(mentioned)
            except InvalidChatIdError:
                continue
            by_user.setdefault(canonical.partition("@")[0], canonical)

        def replace(match: re.Match[str]) -> str:
            digits = match.group(1)
            return "@" + self.ref(by_user.get(digits, f"{digits}@c.us"))

        return _MENTION.sub(replace, text)
