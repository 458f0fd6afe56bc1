"""A turn's messages within the model's limit: each message cut on its own, the last kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.text_limits import MARKER_CHARS, cut_text, fit_messages


def test_a_huge_paste_gives_way_to_the_question_after_it() -> None:
    huge = "my order history: " + "item, " * 150_000
    text, cut = fit_messages([huge, "still there?"], 4000)
    assert len(text) <= 4000
    assert text.endswith("\nstill there?")
    assert text.startswith("my order history: item, ")
    assert "more characters not shown]" in text
    assert cut == len(huge) + len("still there?") + 1 - len(text) + _marker_len(text)


def _marker_len(text: str) -> int:
    """The characters the marker added (they are in the text, not in what was sent)."""
    start = text.index("\n[... ")
    end = text.index("not shown]") + len("not shown]")
    return end - start


def test_a_turn_that_fits_is_left_as_it_is() -> None:
    assert fit_messages(["hello", "are you open today?"], 4000) == (
        "hello\nare you open today?",
        0,
    )


def test_a_huge_last_message_keeps_its_start_and_the_earlier_ones_are_markers() -> None:
    text, cut = fit_messages(["hi", "x" * 10_000], 1000)
    assert len(text) <= 1000
    assert text.startswith("hi\nxxx")
    assert cut == 10_000 - text.count("x")


def test_many_messages_keep_the_newest_and_count_the_rest() -> None:
    texts = [f"message {k}: " + "y" * 300 for k in range(40)]
    text, cut = fit_messages(texts, 1000)
    assert len(text) <= 1000
    assert text.endswith(texts[-1])
    shown = sum(len(t) for t in texts if t in text)
    assert cut >= sum(len(t) for t in texts) - shown - len(text)


def test_a_limit_without_room_for_a_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        fit_messages(["a"], MARKER_CHARS)


def test_cut_text_never_splits_an_emoji_sequence() -> None:
    family = "\N{MAN}\u200d\N{WOMAN}\u200d\N{GIRL}"
    text, cut = cut_text(family * 100, 100)
    kept = text.split("\n[...")[0]
    assert kept == family * (len(kept) // len(family))
    assert cut == len(family) * 100 - len(kept)


@given(
    st.lists(st.text(max_size=600), min_size=1, max_size=12),
    st.integers(min_value=2 * MARKER_CHARS, max_value=2000),
)
def test_any_turn_fits_and_ends_with_its_last_message_when_it_can(
    texts: list[str], limit: int
) -> None:
    text, cut = fit_messages(texts, limit)
    assert len(text) <= limit
    joined = "\n".join(texts)
    if cut == 0:
        assert text == joined
    if len(texts[-1]) <= limit - MARKER_CHARS - 1:
        assert text.endswith(texts[-1])
