"""Operator controls (chat.control) in the guard, and the API's pure helpers, without a broker.

The guard runs over plain dicts as in test_guard_decisions.py; the same controls go through
Apache Kafka, a worker and the API in tests/integration/test_api_bot.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from agents.guard.controls import account_key
from pipeline.api.queries import Cursor, InvalidCursor, _percentile
from schemas import ChatControl, ChatState
from tests.conversation import ACCOUNT, inbound
from tests.unit.test_guard_decisions import T0, Harness

pytestmark = pytest.mark.unit

NEW_CHAT = "4917300000001@c.us"


def apply(harness: Harness, *controls: ChatControl) -> list[str]:
    async def run() -> list[str]:
        return [await harness.guard.on_control(c) for c in controls]

    return asyncio.run(run())


def message(chat: str, body: str, minutes: float = 0.0) -> object:
    at = T0 + timedelta(minutes=minutes)
    return inbound(chat, body, wa_timestamp=at, received_at=at)


def test_pause_of_a_chat_never_seen_creates_its_state_and_holds_until_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    h = Harness()
    assert h.tables.chats.get(NEW_CHAT) is None
    apply(h, ChatControl(action="pause", chat_id=NEW_CHAT, until=T0 + timedelta(minutes=30)))
    state = h.tables.chats.get(NEW_CHAT)
    assert state is not None and state.paused_until == T0 + timedelta(minutes=30)
    assert h.feed(message(NEW_CHAT, "hello?", minutes=1)) == ["paused"]  # type: ignore[arg-type]
    apply(h, ChatControl(action="resume", chat_id=NEW_CHAT))
    assert h.feed(message(NEW_CHAT, "still there?", minutes=2)) == ["accepted"]  # type: ignore[arg-type]
    assert (
        sum("control" in r.getMessage() and NEW_CHAT in r.getMessage() for r in caplog.records) == 2
    )


def test_profile_sets_persona_and_enabled_keeping_the_rest() -> None:
    h = Harness()
    until = T0 + timedelta(hours=1)
    apply(
        h,
        ChatControl(action="pause", chat_id=NEW_CHAT, until=until),
        ChatControl(
            action="profile", chat_id=NEW_CHAT, persona="Talk like a pirate", enabled=False
        ),
    )
    state = h.tables.chats.get(NEW_CHAT)
    expected = ChatState(
        chat_id=NEW_CHAT, paused_until=until, persona="Talk like a pirate", enabled=False
    )
    assert state is not None
    assert state.model_dump(exclude={"trace_id"}) == expected.model_dump(exclude={"trace_id"})
    assert h.feed(message(NEW_CHAT, "hi", minutes=90)) == ["disabled"]  # type: ignore[arg-type]
    apply(h, ChatControl(action="profile", chat_id=NEW_CHAT, persona=None, enabled=True))
    state = h.tables.chats.get(NEW_CHAT)
    assert state is not None and state.persona is None and state.enabled


def test_account_profile_is_kept_apart_and_can_switch_the_account_off() -> None:
    h = Harness()
    apply(h, ChatControl(action="account_profile", account_id=ACCOUNT, persona="Be brief."))
    kept = h.tables.chats.get(account_key(ACCOUNT))
    assert kept is not None and kept.persona == "Be brief." and kept.enabled
    assert h.feed(message(NEW_CHAT, "hi")) == ["accepted"]  # type: ignore[arg-type]
    apply(h, ChatControl(action="account_profile", account_id=ACCOUNT, enabled=False))
    assert h.feed(message("4917300000002@c.us", "hi")) == ["disabled"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "record",
    [
        {"action": "pause", "chat_id": NEW_CHAT},  # no until
        {"action": "resume"},  # no chat
        {"action": "account_profile", "chat_id": NEW_CHAT},  # no account
        {"action": "explode", "chat_id": NEW_CHAT},
        {"action": "resume", "chat_id": "not a chat"},
        {"action": "resume", "chat_id": NEW_CHAT, "colour": "red"},
    ],
)
def test_invalid_controls_are_refused(record: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatControl.model_validate_json(json.dumps(record))


def test_control_key_is_the_chat_or_the_account() -> None:
    assert ChatControl(action="resume", chat_id=NEW_CHAT).key == NEW_CHAT
    assert ChatControl(action="account_profile", account_id=ACCOUNT).key == ACCOUNT


def test_cursor_round_trip_and_refusal() -> None:
    cursor = Cursor(T0, NEW_CHAT)
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("zzz", "", "bm90IGpzb24", Cursor(T0, NEW_CHAT).encode()[:-3]):
        with pytest.raises(InvalidCursor):
            Cursor.decode(bad)


def test_percentiles() -> None:
    assert _percentile([], 0.5) is None
    values = [float(v) for v in range(1, 101)]
    assert _percentile(values, 0.5) == 50.0
    assert _percentile(values, 0.95) == 95.0
    assert _percentile([7.0], 0.95) == 7.0
