"""The guard's decisions, without a broker: every reason it can give, edits and revokes of
the open burst, the unreadable notice and the counter.

The Guard runs on its real tables' value types over plain dicts (a Faust table is a
mapping) and on topics that record what is sent; the same paths run on Apache Kafka in
tests/integration/test_guard_decisions.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.guard.config import GuardTables, GuardTopics
from agents.guard.decisions import Guard
from pipeline.config.settings import Settings
from pipeline.config.stages import guard_config
from pipeline.observability.faust_metrics import guard_decision_counter
from schemas import (
    DECISION_REASONS,
    ChatState,
    GuardDecision,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    Turn,
)
from tables import Counter, GuardState, TypedTable
from tests.conversation import ACCOUNT, inbound

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CHAT = "4917100000001@c.us"
GROUP = "120363000000001@g.us"


class Recorder:
    """A topic that keeps what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, key: bytes, value: Any) -> None:
        self.sent.append(value)


class PartitionedCounts(dict[str, int]):
    """A GlobalTable of per-partition counts, as tables/per_partition.py reads it."""

    partitions = 1


class Harness:
    def __init__(self, **config: Any) -> None:
        self.registry = CollectorRegistry()
        self.topics = GuardTopics(*(Recorder() for _ in range(6)))
        self.tables = GuardTables(
            state=TypedTable({}, GuardState),
            chats=TypedTable({}, ChatState),
            counters=TypedTable({}, Counter),
            token_usage=PartitionedCounts(),
            sender_replies=PartitionedCounts(),
        )
        defaults: dict[str, Any] = {
            "burst_quiet_s": 0.0,
            "rate_chat_per_minute": 0,
            "rate_sender_per_day": 0,
            "loop_max_bot_replies": 0,
            "replay": True,  # no timers: bursts close on the next message's time
        }
        self.guard = Guard(
            replace(guard_config(Settings()), **{**defaults, **config}),
            self.tables,
            self.topics,
            guard_decision_counter("t", self.registry),
        )

    def feed(self, *messages: InboundMessage) -> list[str]:
        async def run() -> list[str]:
            return [await self.guard.on_inbound(m) for m in messages]

        return asyncio.run(run())

    def flush(self, chat: str = CHAT) -> str:
        return asyncio.run(self.guard.on_tick(chat, 0, flush=True))

    def decisions(self) -> list[GuardDecision]:
        return list(self.topics.decisions.sent)

    def turns(self) -> list[Turn]:
        return list(self.topics.turns.sent)

    def outbound(self) -> list[OutboundMessage]:
        return list(self.topics.outbound.sent)

    def counted(self, reason: str) -> float | None:
        return self.registry.get_sample_value("t_guard_decisions_total", {"reason": reason})


def msg(body: str = "hello", at: float = 0.0, chat: str = CHAT, **fields: Any) -> InboundMessage:
    """A message received ``at`` seconds after T0 (and written then)."""
    when = T0 + timedelta(seconds=at)
    return inbound(chat, body, **{"wa_timestamp": when, "received_at": when, **fields})


def change(event: str, target: InboundMessage, body: str = "", at: float = 0.0) -> InboundMessage:
    """An edit, revoke or reaction as the gateway builds it: a record of its own."""
    extra = {"reaction": "👍"} if event == "reaction" else {}
    return msg(
        body,
        at,
        chat=target.chat_id,
        event=event,
        target_message_id=target.message_id,
        type="chat" if event == "edit" else "protocol",
        **extra,
    )


def _reason_cases() -> dict[str, tuple[dict[str, Any], list[InboundMessage]]]:
    """reason -> (guard config, the records that produce it, the last one decided so)."""
    first = msg("first", 0)
    owner = msg("mine", 0, from_me=True, sender_id=ACCOUNT)
    waiting = msg("waiting", 0)
    return {
        "owner_takeover": ({}, [owner]),
        "own_message": ({}, [msg("bot reply", from_me=True, sender_id=ACCOUNT, sent_by_bot=True)]),
        "duplicate": ({}, [first, first]),
        "ciphertext": ({}, [msg("", type="ciphertext")]),
        "status_broadcast": ({}, [msg("story", chat="status@broadcast", sender_id=CHAT)]),
        "newsletter": ({}, [msg("news", chat="1203630001@newsletter", sender_id=CHAT)]),
        "too_old": ({}, [msg("late", 0, wa_timestamp=T0 - timedelta(hours=1))]),
        "blocked": ({"block_list": frozenset({CHAT})}, [msg()]),
        "not_allowed": ({"allow_list": frozenset({"4900@c.us"})}, [msg()]),
        "paused": ({}, [owner, msg("still there?", 60)]),
        "system_message": ({}, [msg("Alice added Bob", type="gp2", subtype="add")]),
        "group_not_addressed": ({}, [msg("among ourselves", chat=GROUP)]),
        "unreadable": ({}, [msg("", type="ptt", has_media=True, media={"mimetype": "audio/ogg"})]),
        "empty": ({}, [msg("   ")]),
        "edited_after_answer": ({}, [first, change("edit", first, "first!", 5)]),
        "revoked_after_answer": ({}, [first, change("revoke", first, at=5)]),
        "reaction": ({}, [first, change("reaction", first, at=5)]),
        "edited_in_burst": ({"burst_quiet_s": 2.0}, [waiting, change("edit", waiting, "w", 1)]),
        "revoked_in_burst": ({"burst_quiet_s": 2.0}, [waiting, change("revoke", waiting, at=1)]),
    }


@pytest.mark.parametrize("reason", list(_reason_cases()))
def test_each_reason_is_recorded_and_counted(reason: str) -> None:
    config, records = _reason_cases()[reason]
    h = Harness(**config)
    results = h.feed(*records)
    assert results[-1] == reason
    last = records[-1]
    decided = [d for d in h.decisions() if d.message_id == last.message_id]
    assert [d.reason for d in decided] == [reason]
    d = decided[0]
    assert (d.chat_id, d.sender_id, d.trace_id, d.received_at, d.event, d.type) == (
        last.chat_id,
        last.sender_id,
        last.trace_id,
        last.received_at,
        last.event,
        last.type,
    )
    assert d.target_message_id == last.target_message_id
    assert h.counted(reason) == Tally(x.reason for x in h.decisions())[reason]


def test_a_disabled_chat_is_recorded() -> None:
    h = Harness()
    h.tables.chats.put(CHAT, ChatState(chat_id=CHAT, enabled=False))
    assert h.feed(msg()) == ["disabled"]
    assert [d.reason for d in h.decisions()] == ["disabled"]


def test_every_reason_is_exported_at_zero_from_the_start() -> None:
    h = Harness()
    assert all(h.counted(reason) == 0 for reason in DECISION_REASONS)
    with pytest.raises(KeyError):
        h.guard.count_decision("made_up")  # type: ignore[misc]


def test_every_record_ends_in_a_turn_or_one_decision() -> None:
    h = Harness(burst_quiet_s=2.0)
    a, b, c = msg("a", 0), msg("b", 1), msg("c", 10)
    records = [
        a,
        b,
        change("edit", a, "A", 1.5),
        change("revoke", b, at=1.8),
        c,
        change("edit", a, "again", 11),
        msg("", 12, type="sticker", has_media=True, media={"mimetype": "image/webp"}),
        a,
    ]
    h.feed(*records)
    h.flush()
    in_turns = [m for t in h.turns() for m in t.message_ids]
    decided = [d.message_id for d in h.decisions()]
    # A message taken out of its burst is accounted for by the revoke's decision.
    revoked = [d.target_message_id for d in h.decisions() if d.reason == "revoked_in_burst"]
    assert revoked == [b.message_id]
    # `a` came twice: once into a turn, once as a duplicate.
    assert sorted(in_turns + decided + revoked) == sorted(r.message_id for r in records)
    assert [t.text for t in h.turns()] == ["A", "c"]


def test_an_edit_in_the_open_burst_changes_the_turn_and_a_revoke_removes_it() -> None:
    h = Harness(burst_quiet_s=2.0)
    hi, order, oops = msg("hi", 0), msg("order 42 is late", 0.5), msg("wrong chat, sorry", 1)
    h.feed(hi, order, oops, change("edit", order, "order 43 is late", 1.2))
    h.feed(change("revoke", oops, at=1.4))
    assert h.turns() == []  # the burst is still open
    h.flush()
    [turn] = h.turns()
    assert turn.text == "hi\norder 43 is late"
    assert turn.message_ids == [hi.message_id, order.message_id]
    assert [d.reason for d in h.decisions()] == ["edited_in_burst", "revoked_in_burst"]
    assert h.decisions()[1].target_message_id == oops.message_id


def test_revoking_the_whole_burst_makes_no_turn() -> None:
    h = Harness(burst_quiet_s=2.0)
    only = msg("oops", 0)
    assert h.feed(only, change("revoke", only, at=0.5)) == ["accepted", "revoked_in_burst"]
    assert h.flush() == "tick:stale"
    assert h.turns() == []


def test_an_edit_after_the_burst_closed_is_recorded_not_answered() -> None:
    # Judged by message time: the edit comes after the burst was due, so the turn (with the
    # old text) is made first and the edit only recorded.
    h = Harness(burst_quiet_s=2.0)
    first = msg("what time do you open", 0)
    h.feed(first, change("edit", first, "what time do you close", 5))
    assert [t.text for t in h.turns()] == ["what time do you open"]
    assert [d.reason for d in h.decisions()] == ["edited_after_answer"]


def test_the_owner_taking_over_drops_the_open_burst_with_a_decision_each() -> None:
    h = Harness(burst_quiet_s=2.0, takeover_pause_s=600)
    waiting = [msg("hello", 0), msg("anyone?", 0.5)]
    owner = msg("I'll handle this", 1, from_me=True, sender_id=ACCOUNT)
    h.feed(*waiting, owner)
    h.flush()
    assert h.turns() == []
    decided = h.decisions()
    assert [(d.message_id, d.reason) for d in decided] == [
        *((m.message_id, "owner_takeover") for m in waiting),
        (owner.message_id, "owner_takeover"),
    ]
    assert {d.paused_until for d in decided} == {owner.received_at + timedelta(seconds=600)}
    assert h.feed(msg("back?", 599))[0] == "paused"
    assert h.feed(msg("back?", 602))[0] == "accepted"


def test_unreadable_messages_get_one_notice_per_chat_and_day() -> None:
    h = Harness(unreadable_notice="text please")

    def voice(at: float, chat: str = CHAT) -> InboundMessage:
        return msg("", at, chat=chat, type="ptt", has_media=True, media={"mimetype": "audio/ogg"})

    day = 86400.0
    h.feed(
        voice(0),
        voice(60),
        msg("", 120, type="sticker", has_media=True, media={"mimetype": "image/webp"}),
        voice(130, "4917100000002@c.us"),
        voice(day + 10),
    )
    notices = h.outbound()
    assert [(n.chat_id, n.kind, n.text) for n in notices] == [
        (CHAT, "notice", "text please"),
        ("4917100000002@c.us", "notice", "text please"),
        (CHAT, "notice", "text please"),
    ]
    assert len({n.outbound_id for n in notices}) == 3
    assert [d.notice_outbound_id for d in h.decisions()] == [
        notices[0].outbound_id,
        None,
        None,
        notices[1].outbound_id,
        notices[2].outbound_id,
    ]
    # The same chat and day give the same id in another guard (a replay, a new worker).
    again = Harness(unreadable_notice="text please")
    again.feed(voice(300))
    assert again.outbound()[0].outbound_id == notices[0].outbound_id


def test_a_caption_is_answered_and_the_notice_can_be_turned_off() -> None:
    h = Harness(unreadable_notice_enabled=False)
    photo = {"type": "image", "has_media": True, "media": {"mimetype": "image/jpeg"}}
    assert h.feed(msg("what is this part?", **photo), msg("", 1, **photo)) == [
        "accepted",
        "unreadable",
    ]
    assert h.outbound() == []
    assert [d.notice_outbound_id for d in h.decisions()] == [None]


def test_a_group_gets_no_notice_for_a_sticker_nobody_addressed_to_us() -> None:
    h = Harness()
    sticker = msg("", chat=GROUP, type="sticker", has_media=True, media={"mimetype": "image/webp"})
    assert h.feed(sticker) == ["group_not_addressed"]
    assert h.outbound() == []


@pytest.mark.parametrize(
    ("config", "prepare", "reason", "notices"),
    [
        ({"rate_chat_per_minute": 1}, "answered", "rate_limited_chat", 1),
        ({"loop_max_bot_replies": 1}, "answered", "loop_guard", 0),
        ({"daily_token_budget": 10}, "tokens", "token_budget", 1),
        ({"rate_sender_per_day": 1}, "sender", "rate_limited_sender", 1),
    ],
)
def test_a_skipped_burst_gets_a_decision_per_message_and_keeps_its_llm_call(
    config: dict[str, Any], prepare: str, reason: str, notices: int
) -> None:
    h = Harness(burst_quiet_s=2.0, **config)
    day = T0.date().isoformat()
    if prepare == "tokens":
        h.tables.token_usage[f"{day}|0"] = 50
    elif prepare == "sender":
        h.tables.sender_replies[f"{CHAT}|{int(T0.timestamp() // 86400)}|0"] = 1
    else:
        h.feed(msg("first", 0))  # answered: fills the minute's and the loop's count
        h.flush()
    burst = [msg("two", 10), msg("three", 10.5)]
    h.feed(*burst)
    h.flush()
    skipped = [c for c in h.topics.llm_calls.sent if isinstance(c, LLMCall)]
    assert [(c.status, c.decision) for c in skipped] == [("skipped", reason)]
    decided = [d for d in h.decisions() if d.reason == reason]
    assert [d.message_id for d in decided] == [m.message_id for m in burst]
    assert {d.turn_id for d in decided} == {skipped[0].turn_id}
    assert len([n for n in h.outbound() if n.kind == "notice"]) == notices
    assert decided[0].notice_outbound_id == (h.outbound()[0].outbound_id if notices else None)
    assert h.counted(reason) == 2


def test_a_long_burst_keeps_its_last_message_and_records_the_cut() -> None:
    h = Harness(burst_quiet_s=2.0, max_turn_chars=1000)
    paste = "pasted log line\n" * 10_000
    h.feed(msg(paste, 0), msg("still there?", 1))
    h.flush()
    [turn] = h.turns()
    assert turn.text.endswith("\nstill there?")
    assert turn.text.startswith("pasted log line")
    assert len(turn.text) <= 1000
    kept = turn.text.split("\n[... ")[0]
    assert paste.startswith(kept)
    assert turn.cut_chars == len(paste.strip()) - len(kept)
    assert f"[... {turn.cut_chars} more characters not shown]" in turn.text
