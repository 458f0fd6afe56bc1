"""The guard's per-chat memory of message ids: what a long chat costs on every message.

The guard writes a chat's whole GuardState to its changelog on every inbound message, so
the remembered ids (up to WABOT_DEDUPE_WINDOW = 500) are written again each time: a chat
with a long history must not cost tens of kilobytes a message.
"""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from tables import GuardState


def android_id() -> str:
    """A message id as WhatsApp's Android app makes them: 32 hex digits."""
    return uuid.uuid4().hex.upper()


def test_a_full_dedupe_window_is_small_on_the_changelog() -> None:
    state = GuardState()
    ids = [android_id() for _ in range(600)]
    for message_id in ids:
        state.remember(message_id, 500)
    written = json.dumps(state.model_dump(mode="json"))
    # 500 ids of 32 characters were 18 KB of JSON a message.
    assert len(written) < 6_500, len(written)
    assert all(state.has_seen(m) for m in ids[100:])
    assert not any(state.has_seen(m) for m in ids[:100])  # the oldest fell out
    assert not state.has_seen(android_id())


def test_a_state_written_before_with_plain_ids_still_knows_them() -> None:
    """A changelog (or RocksDB store) written by the previous version holds the ids
    themselves; a worker of this version must still recognise them as seen."""
    old_ids = [android_id() for _ in range(20)]
    old = {"seen": old_ids, "next_seq": 7, "pending": None, "generation": 3}
    state = GuardState.model_validate(json.loads(json.dumps(old)))
    assert all(state.has_seen(m) for m in old_ids)
    assert state.next_seq == 7
    state.remember("NEW", 500)
    again = GuardState.model_validate(json.loads(json.dumps(state.model_dump(mode="json"))))
    assert again.has_seen("NEW") and all(again.has_seen(m) for m in old_ids)


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=80),
    limit=st.integers(min_value=1, max_value=30),
)
def test_the_newest_limit_ids_are_seen_after_a_round_trip(ids: list[str], limit: int) -> None:
    state, window = GuardState(), []  # ``window``: what the guard must remember
    for message_id in ids:
        if not state.has_seen(message_id):
            state.remember(message_id, limit)
            window = [*window, message_id][-limit:]
        state = GuardState.model_validate_json(state.model_dump_json())
    assert all(state.has_seen(m) for m in window)
    assert not state.has_seen("\x00never sent")
