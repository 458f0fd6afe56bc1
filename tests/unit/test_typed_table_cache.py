"""The windows table's parse cache (tables/values.py): a hit only for the very stored value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tables import ConversationWindow, GuardState, TypedTable


def _window(turn: str) -> ConversationWindow:
    return ConversationWindow().with_exchange(
        turn_id=turn,
        seq=0,
        user="hi",
        reply="hello",
        now=1.0,
        idle_expiry_s=3600,
        max_entries=20,
        token_budget=3000,
    )


def test_a_cached_window_is_the_one_written_until_the_stored_value_changes() -> None:
    store: dict[str, object] = {}
    windows = TypedTable(store, ConversationWindow, cache=2)
    first = _window("t1")
    windows.put("chat", first)
    assert windows.get("chat") is first  # no parse: the value written is handed back

    # Someone else wrote the key (a changelog recovery, another writer): parsed again.
    store["chat"] = _window("t2").model_dump(mode="json")
    again = windows.get("chat")
    assert again is not None and again.applied_turns == ["t2"]
    assert windows.get("chat") is again

    windows.delete("chat")
    assert windows.get("chat") is None


def test_the_cache_keeps_only_the_most_recent_keys() -> None:
    store: dict[str, object] = {}
    windows = TypedTable(store, ConversationWindow, cache=2)
    written = {key: _window(key) for key in ("a", "b", "c")}
    for key, window in written.items():
        windows.put(key, window)
    assert windows.get("a") == written["a"] and windows.get("a") is not written["a"]
    assert windows.get("c") is written["c"]


def test_cached_windows_cannot_be_changed_in_place() -> None:
    window = _window("t1")
    with pytest.raises(ValidationError):
        window.updated_at = 5.0  # type: ignore[misc]


def test_only_frozen_models_can_be_cached() -> None:
    with pytest.raises(ValueError, match="frozen"):
        TypedTable({}, GuardState, cache=10)
