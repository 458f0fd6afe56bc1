"""Reply splitting and the conversation window: pure functions, no broker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.respond import split_reply
from tables import ConversationWindow, estimate_tokens

pytestmark = pytest.mark.unit


def test_short_reply_is_one_message() -> None:
    assert split_reply("  Hello!  ", 100) == ["Hello!"]


def test_long_reply_splits_at_sentences() -> None:
    text = " ".join(f"Sentence number {i}." for i in range(40))
    parts = split_reply(text, 120)
    assert len(parts) > 1
    assert all(len(p) <= 120 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == text


def test_paragraphs_are_preferred_cut_points() -> None:
    text = "First paragraph " * 5 + "\n\n" + "Second paragraph " * 5
    parts = split_reply(text.strip(), 100)
    assert parts[0] == ("First paragraph " * 5).strip()


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=3000), st.integers(min_value=50, max_value=500))
def test_split_never_exceeds_the_limit_and_loses_no_words(text: str, limit: int) -> None:
    parts = split_reply(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


def _exchange(
    window: ConversationWindow, seq: int, now: float = 1000.0, **kw: int
) -> ConversationWindow:
    return window.with_exchange(
        turn_id=f"t{seq}",
        seq=seq,
        user=f"user {seq}",
        reply=f"reply {seq}",
        now=now,
        idle_expiry_s=3600,
        max_entries=kw.get("max_entries", 6),
        token_budget=kw.get("token_budget", 10_000),
    )


def test_window_keeps_the_last_entries_and_remembers_applied_turns() -> None:
    window = ConversationWindow()
    for seq in range(5):
        window = _exchange(window, seq)
    assert [e.content for e in window.entries] == [
        "user 2",
        "reply 2",
        "user 3",
        "reply 3",
        "user 4",
        "reply 4",
    ]
    assert window.last_applied_seq == 4
    assert window.is_applied("t0") and window.is_applied("t4")


def test_window_respects_the_token_budget() -> None:
    window = ConversationWindow()
    for seq in range(5):
        window = _exchange(window, seq, max_entries=100, token_budget=12)
    assert sum(estimate_tokens(e.content) for e in window.entries) <= 12
    assert window.entries[-1].content == "reply 4"


def test_idle_window_starts_afresh() -> None:
    window = _exchange(ConversationWindow(), 0, now=1000.0)
    assert window.context(now=1000.0 + 7200, idle_expiry_s=3600) == []
    later = _exchange(window, 1, now=1000.0 + 7200)
    assert [e.seq for e in later.entries] == [1, 1]
