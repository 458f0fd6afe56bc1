"""How long texts are cut before they reach the model (not an agent itself).

Two cuts, one rule each:

- :func:`cut_text`: one text within ``limit`` code points, cut at a grapheme-cluster boundary
  (UAX #29, ``regex``'s ``\\X``), never inside an emoji sequence or a combining mark, with a
  marker saying how many characters were left out.
- :func:`fit_messages`: the messages of one turn (a burst the guard coalesced) within
  ``limit`` together. Each message is cut on its own and the turn's **last** message is kept
  first: a huge paste followed by "still there?" keeps the question, and the paste gives up
  what does not fit. What was cut is returned so it can be recorded (``Turn.cut_chars``,
  ``LLMCall.cut_chars``).
"""

from __future__ import annotations

import regex

__all__ = ["MARKER_CHARS", "cut_text", "fit_messages"]

_CLUSTER = regex.compile(r"\X")

#: Room kept for the marker ``"\n[... N more characters not shown]"`` (N up to 10 digits).
MARKER_CHARS = 48


def cut_text(text: str, limit: int) -> tuple[str, int]:
    """``text`` within ``limit`` code points, cut at a grapheme-cluster boundary with a marker
    saying how many characters were cut; and that number (0 when nothing was cut).

    The start is kept. A ``limit`` below :data:`MARKER_CHARS` keeps the marker alone.
    """
    if len(text) <= limit:
        return text, 0
    keep = max(limit - MARKER_CHARS, 0)
    end = 0
    for match in _CLUSTER.finditer(text, 0, keep + 1):
        if match.end() > keep:
            break
        end = match.end()
    cut = len(text) - end
    return f"{text[:end]}\n[... {cut} more characters not shown]", cut


def fit_messages(texts: list[str], limit: int, sep: str = "\n") -> tuple[str, int]:
    """``texts`` joined by ``sep`` within ``limit`` code points; and the characters cut.

    The last text is given up to the whole ``limit``; what is left goes to the texts before
    it, newest first, each cut on its own by :func:`cut_text` (so each keeps its start and a
    marker). A text that gets no room at all is replaced by a marker alone; when even the
    markers would not fit, the oldest texts are left out and counted as cut.

    Raises ``ValueError`` for a ``limit`` below ``2 * MARKER_CHARS`` (no room for a question
    and a marker).
    """
    if limit < 2 * MARKER_CHARS:
        raise ValueError(f"limit must be at least {2 * MARKER_CHARS} characters")
    joined = sep.join(texts)
    if len(joined) <= limit or not texts:
        return joined, 0
    *earlier, last = texts
    # The question first, leaving room for one marker if anything comes before it.
    reserve = MARKER_CHARS + len(sep) if earlier else 0
    kept_last, cut = cut_text(last, limit - reserve)
    room = limit - len(kept_last)
    kept: list[str] = [kept_last]
    for index in range(len(earlier) - 1, -1, -1):
        text = earlier[index]
        share = room - len(sep)
        if share < MARKER_CHARS:
            # No room for this one nor those before it: they are counted, not shown.
            cut += sum(len(t) for t in earlier[: index + 1])
            break
        piece, piece_cut = cut_text(text, share)
        kept.append(piece)
        cut += piece_cut
        room -= len(piece) + len(sep)
    return sep.join(reversed(kept)), cut
