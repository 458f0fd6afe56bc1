"""split_reply cuts only between grapheme clusters (UAX #29) and counts UTF-16 code units.

"Joins to the original" means: the parts appear in the original in order with nothing but
whitespace between them, so joining them with the whitespace each cut removed gives back the
text without its leading and trailing whitespace clusters exactly (:func:`_rejoin`). Whitespace
is stripped by whole clusters: a space carrying a combining mark is not whitespace.
"""

from __future__ import annotations

import pytest
import regex
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agents.respond import split_reply, utf16_len

pytestmark = pytest.mark.unit

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 7 code points, 11 units
FLAG_DE = "\U0001f1e9\U0001f1ea"
THUMB_MEDIUM = "\U0001f44d\U0001f3fd"  # thumbs up + skin tone modifier
E_ACUTE = "e\u0301"  # e + combining acute accent
KSHI = "\u0915\u094d\u0937\u093f"  # Devanagari क्षि


def _clusters(text: str) -> list[str]:
    return list(regex.findall(r"\X", text))


def _boundaries(text: str) -> set[int]:
    """Code-point offsets at which ``text`` may be cut: the grapheme cluster boundaries."""
    out = {0}
    position = 0
    for cluster in _clusters(text):
        position += len(cluster)
        out.add(position)
    return out


def _strip(text: str) -> str:
    clusters = _clusters(text)
    while clusters and clusters[0].isspace():
        clusters.pop(0)
    while clusters and clusters[-1].isspace():
        clusters.pop()
    return "".join(clusters)


def _rejoin(text: str, parts: list[str]) -> list[tuple[int, int]]:
    """Where each part lies in ``text``; fails unless only whitespace lies around and between."""
    spans = []
    position = 0
    for part in parts:
        while (
            position < len(text)
            and text[position].isspace()
            and not text.startswith(part, position)
        ):
            position += 1
        assert text.startswith(part, position), (part, text[position : position + 20])
        spans.append((position, position + len(part)))
        position += len(part)
    assert text[position:].strip() == ""
    return spans


@pytest.mark.parametrize(
    "unit",
    [FAMILY, FLAG_DE, THUMB_MEDIUM, E_ACUTE, KSHI],
    ids=["zwj-family", "flag", "skin-tone", "combining-mark", "devanagari-conjunct"],
)
def test_a_run_of_one_cluster_is_cut_only_between_clusters(unit: str) -> None:
    text = unit * 120
    parts = split_reply(text, 50)
    assert len(parts) > 1
    for part in parts:
        assert part == unit * (len(part) // len(unit)), part
        assert utf16_len(part) <= 50
    assert "".join(parts) == text


def test_the_limit_counts_utf16_code_units_as_whatsapp_web_does() -> None:
    text = "\U0001f600" * 40  # 40 code points, 80 UTF-16 code units
    parts = split_reply(text, 50)
    assert [len(p) for p in parts] == [25, 15]
    assert all(utf16_len(p) <= 50 for p in parts)


def test_a_cluster_longer_than_the_limit_is_cut_between_code_points() -> None:
    zalgo = "a" + "\u0301" * 120  # one cluster of 121 code points
    parts = split_reply(zalgo, 50)
    assert "".join(parts) == zalgo
    assert all(utf16_len(p) <= 50 for p in parts)


def test_whitespace_next_to_a_combining_mark_is_not_stripped_off_it() -> None:
    # " \u0301" is one cluster (a space carrying an accent): not whitespace to strip.
    text = "word " * 12 + " \u0301" + "x" * 60
    parts = split_reply(text, 70)
    assert all(not p.startswith("\u0301") for p in parts)
    _rejoin(_strip(text), parts)


_PIECES = [
    FAMILY,
    FLAG_DE,
    "\U0001f1ef\U0001f1f5",
    THUMB_MEDIUM,
    E_ACUTE,
    KSHI,
    "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag (ZWJ + variation selector)
    "\u0645\u0631\u062d\u0628\u064b\u0627",  # Arabic with a tanween mark
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd",  # Hebrew with niqqud
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002",  # Chinese with full-width punctuation
    "\u3053\u3093\u306b\u3061\u306f",  # Japanese
    "\ud55c\uad6d\uc5b4",  # Korean syllables
    "\u1100\u1161\u11a8",  # Korean jamo forming one cluster
    "\U0001f600",
    "\r\n",
    "\n\n",
    "\n",
    " ",
    ". ",
    "? ",
    "hello",
    "world.",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), min_size=1, max_size=400).map("".join),
    st.integers(min_value=50, max_value=400),
)
def test_mixed_scripts_split_within_the_limit_at_clusters_and_join_to_the_original(
    text: str, limit: int
) -> None:
    assume(all(utf16_len(c) <= limit for c in _clusters(text)))
    parts = split_reply(text, limit)
    stripped = _strip(text)
    assert bool(parts) == bool(stripped)
    for part in parts:
        clusters = _clusters(part)
        assert clusters and not clusters[0].isspace() and not clusters[-1].isspace()
        assert utf16_len(part) <= limit
    spans = _rejoin(stripped, parts)
    allowed = _boundaries(stripped)
    for start, end in spans:
        assert start in allowed and end in allowed, (start, end)
