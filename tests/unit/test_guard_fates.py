"""Every WhatsApp message type has a decided fate, in code and in the README."""

from __future__ import annotations

import re
from typing import get_args

from agents.guard import FATES
from schemas import DECISION_REASONS, MessageType
from tests.conftest import REPO

#: The README's words for each fate (the "fate" column of its message-type table).
README_FATES = {
    "text": "answered",
    "caption": "answered with its text, else unreadable",
    "unreadable": "unreadable",
    "system": "ignored (system_message)",
    "placeholder": "ignored (ciphertext)",
}


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


def test_readme_lists_every_type_with_its_fate() -> None:
    readme = (REPO / "README.md").read_text()
    listed: dict[str, str] = {}
    for line in readme.splitlines():
        row = re.fullmatch(r"\| (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*) \| ([^|]+) \|", line.strip())
        if row and row.group(2).strip() in README_FATES.values():  # not the reasons' table
            for name in re.findall(r"`([a-z0-9_]+)`", row.group(1)):
                listed[name] = row.group(2).strip()
    expected = {t: README_FATES[fate] for t, fate in FATES.items()}
    assert {t: listed.get(t) for t in expected} == expected


def test_readme_explains_every_decision_reason() -> None:
    readme = (REPO / "README.md").read_text()
    assert "### Why a message got no answer" in readme
    section = readme.split("### Why a message got no answer", 1)[-1].split("\n#", 1)[0]
    explained = re.findall(r"^\| `([a-z_]+)` \| \S", section, re.M)
    assert len(explained) == len(set(explained))
    missing = [r for r in DECISION_REASONS if r not in explained]
    assert not missing, f"reason codes missing from the README's table: {missing}"
    assert set(explained) == set(DECISION_REASONS), "the README explains reasons the code lacks"
