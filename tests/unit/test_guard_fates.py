"""Every WhatsApp message type has a decided fate (the docs' table is checked against it in
tests/unit/test_docs.py)."""

from __future__ import annotations

from typing import get_args

from agents.guard.fates import FATES
from schemas import MessageType


def test_every_message_type_has_exactly_one_fate() -> None:
    types = set(get_args(MessageType))
    assert set(FATES) == types, (
        f"types without a fate: {sorted(types - set(FATES))}; "
        f"fates of unknown types: {sorted(set(FATES) - types)}"
    )


def test_voice_notes_stickers_and_system_messages_have_their_fates() -> None:
    assert FATES["chat"] == "text"
    assert {FATES[t] for t in ("ptt", "audio", "sticker", "ptv")} == {"unreadable"}
    assert FATES["location"] == "caption"  # a location with a comment is answered
    assert {FATES[t] for t in ("gp2", "e2e_notification", "call_log", "protocol")} == {"system"}
    assert FATES["ciphertext"] == "placeholder"
