"""guard: wa.inbound -> chat.turns (or pipeline.dlq), deciding what deserves an answer.

Per record, in order: decode (bad bytes go to the DLQ with the reason, and the next
record is processed); drop status posts, newsletters, ciphertext placeholders and
types we cannot answer; drop duplicates (WhatsApp emits a message again after
decryption: the ciphertext placeholder is skipped without being remembered, so the
decrypted message with the same id still counts once); a message the owner typed on
the phone pauses the bot in that chat (human takeover); our own messages are never
answered; old messages, blocked or not-allowed chats and group messages that neither
mention us nor start with the prefix are ignored. What is left joins the chat's open
burst, which becomes one Turn when the chat has been quiet for ``burst_quiet_s``.

Bursts and timers. The open burst lives in the ``guard_state`` table, so a restart
loses nothing. Closing it needs a clock, but tables may only change in stream
context; so a timer task (outside stream context) only *produces* a tick record to
the co-partitioned ``guard.ticks`` topic, and this agent, consuming ticks and inbound
records in one stream, closes the burst when the tick matches its generation. After a
rebalance the timer rescans the table, so bursts of a crashed worker still close.

Event time. Every rule that needs a time reads the message's own: the gateway's
``received_at`` (precise; WhatsApp's ``t`` has whole seconds), never the worker's clock.
A burst is due ``burst_quiet_s`` after its last message was received; a message received
after that closes the burst before it is judged (its tick was late), the takeover pause
runs from the owner's message, rate windows are the minute and day of the turn's last
message, a message is too old when it was received ``ignore_older_than_s`` after it was
written. So a replay, which runs as fast as the LLM allows, makes the same turns as the
live run did. In a replay (``GuardConfig.replay``) nothing is scheduled by the clock: a
burst closes on the chat's next message or on a ``flush`` tick that the replay command
sends per chat once the guard has read all of its input.

Limits are checked here, before any LLM call: replies per chat per minute, per sender
per day and the account's daily token budget (both GlobalTables summed over partitions,
so a sender in several groups is counted once for the account) and the loop guard.
Over a limit there is no turn, an ``LLMCall`` with status ``skipped`` records the
decision, and at most one polite notice goes out per window.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from faust import current_event
from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from schemas import ChatState, InboundMessage, LLMCall, OutboundMessage, Turn
from schemas.chat_ids import is_newsletter, is_status_broadcast
from tables import (
    Counter,
    GuardState,
    PendingBurst,
    TypedTable,
    count_reply,
    replies_to,
    used_on,
)

log = logging.getLogger(__name__)

#: Message types that carry text we can answer (media only with a caption).
ANSWERABLE = {"chat", "image", "video", "document"}


@dataclass(frozen=True)
class GuardConfig:
    burst_quiet_s: float = 1.5
    ignore_older_than_s: float = 900.0
    takeover_pause_s: float = 1800.0
    allow_list: frozenset[str] = frozenset()
    block_list: frozenset[str] = frozenset()
    group_prefix: str = "!bot"
    dedupe_window: int = 500
    rate_chat_per_minute: int = 6
    rate_sender_per_day: int = 200
    daily_token_budget: int = 0
    loop_max_bot_replies: int = 20
    loop_quiet_reset_s: float = 600.0
    limit_notice: str = "I'll answer again in a little while."
    #: A replay: bursts close by message time and flush ticks only, never by the clock.
    replay: bool = False


@dataclass
class GuardTables:
    state: TypedTable[GuardState]
    chats: TypedTable[ChatState]
    counters: TypedTable[Counter]
    token_usage: Any
    sender_replies: Any


@dataclass
class GuardTopics:
    turns: Any
    ticks: Any
    outbound: Any
    llm_calls: Any
    dlq: Any


@dataclass(order=True)
class _Due:
    due_at: float
    chat_id: str = field(compare=False)
    generation: int = field(compare=False)
    trace_id: str = field(compare=False, default="-")


class BurstTimers:
    """When each open burst is due; fed by the agent, drained by the timer task."""

    def __init__(self) -> None:
        self._heap: list[_Due] = []
        self.rescan = True

    def schedule(self, chat_id: str, generation: int, due_at: float, trace_id: str = "-") -> None:
        heapq.heappush(self._heap, _Due(due_at, chat_id, generation, trace_id))

    def pop_due(self, now: float) -> list[_Due]:
        due = []
        while self._heap and self._heap[0].due_at <= now:
            due.append(heapq.heappop(self._heap))
        return due


def turn_id_for(first: InboundMessage) -> str:
    """Deterministic: the same first message always makes the same turn id."""
    return hashlib.sha1(first.dedupe_key.encode()).hexdigest()[:24]


def _now() -> float:
    return time.time()


def _day(at: datetime) -> int:
    """Days since the epoch, UTC: the window of the per-sender limit."""
    return int(at.timestamp() // 86400)


class Guard:
    """The decisions, kept apart from Faust plumbing so each rule reads on its own."""

    def __init__(self, config: GuardConfig, tables: GuardTables, topics: GuardTopics) -> None:
        self.config = config
        self.tables = tables
        self.topics = topics
        self.timers = BurstTimers()

    # -- inbound -----------------------------------------------------------------
    async def on_inbound(self, message: InboundMessage) -> str:
        """Handle one message; return what was decided (for logs and tests)."""
        chat = message.chat_id
        if is_status_broadcast(chat) or is_newsletter(chat):
            return "ignored:broadcast"
        if message.type == "ciphertext":
            # Not remembered: the decrypted copy with the same id must still count.
            return "ignored:ciphertext"
        state = self.tables.state.get_or(chat, GuardState())
        if state.has_seen(message.message_id):
            return "dropped:duplicate"
        state.remember(message.message_id, self.config.dedupe_window)
        if state.pending is not None and message.received_at.timestamp() > state.pending.due_at:
            # The chat went quiet before this message came: the burst is over (its tick
            # is late, or this is a replay, which has no clock).
            await self._close_burst(chat, state)
        decision = self._classify(message, state)
        if decision == "accepted":
            self._add_to_burst(state, message)
            if self.config.burst_quiet_s <= 0:
                await self._close_burst(chat, state)  # writes the state after the turn
                return decision
        self.tables.state.put(chat, state)
        return decision

    def _classify(self, message: InboundMessage, state: GuardState) -> str:
        cfg = self.config
        chat = message.chat_id
        at = message.received_at
        chat_state = self._chat_state(chat)
        if message.from_me:
            if message.sent_by_bot:
                return "ignored:own_message"
            # The owner answered from the phone: stay quiet and drop what was pending.
            chat_state = chat_state.model_copy(
                update={
                    "paused_until": at + timedelta(seconds=cfg.takeover_pause_s),
                    "consecutive_bot_replies": 0,
                    "last_human_at": at,
                }
            )
            self.tables.chats.put(chat, chat_state)
            state.pending = None
            log.info(
                "owner typed in %s: the bot is quiet there until %s",
                chat,
                chat_state.paused_until.isoformat() if chat_state.paused_until else "-",
            )
            return "paused:owner_typed"
        if (at - message.wa_timestamp).total_seconds() > cfg.ignore_older_than_s:
            return "ignored:too_old"
        if chat in cfg.block_list or (cfg.allow_list and chat not in cfg.allow_list):
            return "ignored:not_allowed"
        if not chat_state.enabled:
            return "ignored:disabled"
        if chat_state.is_paused(at):
            return "ignored:paused"
        if message.type not in ANSWERABLE or not message.body.strip():
            return "ignored:unanswerable_type"
        if message.is_group and not self._addressed_in_group(message):
            return "ignored:group_not_addressed"
        return "accepted"

    def _addressed_in_group(self, message: InboundMessage) -> bool:
        if message.account_id in message.mentioned_ids:
            return True
        prefix = self.config.group_prefix
        return bool(prefix) and message.body.lstrip().lower().startswith(prefix.lower())

    def _add_to_burst(self, state: GuardState, message: InboundMessage) -> None:
        pending = state.pending or PendingBurst()
        pending.messages.append(message.model_dump(mode="json"))
        state.generation += 1
        pending.generation = state.generation
        pending.due_at = message.received_at.timestamp() + self.config.burst_quiet_s
        state.pending = pending
        if self.config.burst_quiet_s > 0 and not self.config.replay:
            self.timers.schedule(
                message.chat_id, pending.generation, pending.due_at, message.trace_id
            )

    # -- ticks -------------------------------------------------------------------
    async def on_tick(self, chat: str, generation: int, flush: bool = False) -> str:
        """A timer's tick for burst ``generation`` of ``chat``; ``flush`` (from the replay
        command, after the chat's last input) closes whatever burst is open."""
        state = self.tables.state.get(chat)
        if state is None or state.pending is None:
            return "tick:stale"
        if flush:
            await self._close_burst(chat, state)
            return "tick:flushed"
        if state.pending.generation != generation:
            return "tick:stale"
        if state.pending.due_at > _now() + 0.01:
            self.timers.schedule(chat, generation, state.pending.due_at)
            return "tick:early"
        await self._close_burst(chat, state)
        return "tick:closed"

    def overdue_after_rebalance(self) -> None:
        """Schedule every open burst found in the table (after recovery or a crash)."""
        if self.config.replay:
            return  # no clock in a replay: flush ticks close what is left
        for chat in self.tables.state.keys():  # noqa: SIM118 (a table wrapper, not a dict)
            state = self.tables.state.get(chat)
            if state is not None and state.pending is not None:
                self.timers.schedule(chat, state.pending.generation, state.pending.due_at)

    # -- closing a burst -----------------------------------------------------------
    async def _close_burst(self, chat: str, state: GuardState) -> None:
        assert state.pending is not None
        messages = [InboundMessage.model_validate(m) for m in state.pending.messages]
        state.pending = None
        first, last = messages[0], messages[-1]
        at = last.received_at  # the turn's time, for every limit window
        blocked = self._limit_reached(first, at)
        if blocked is not None:
            await self._skip(first, blocked, at)
            self.tables.state.put(chat, state)
            return
        text = "\n".join(self._strip_prefix(m) for m in messages)
        turn = Turn(
            turn_id=turn_id_for(first),
            chat_id=chat,
            account_id=first.account_id,
            sender_id=first.sender_id,
            seq=state.next_seq,
            message_ids=[m.message_id for m in messages],
            text=text,
            is_group=first.is_group,
            quoted_message_id=last.quoted_message_id,
            first_received_at=first.received_at,
            last_received_at=last.received_at,
            trace_id=first.trace_id,
        )
        # Output first, state second: if the worker dies between the two, the message
        # is processed again and yields the same turn (same id and seq), which respond
        # and apply_reply recognise; the other order could lose the turn.
        await self.topics.turns.send(key=chat.encode(), value=turn)
        state.next_seq += 1
        self.tables.state.put(chat, state)
        self._count_reply(first, at)
        log.info("turn %s seq=%d from %d message(s)", turn.turn_id, turn.seq, len(messages))

    def _strip_prefix(self, message: InboundMessage) -> str:
        body = message.body.strip()
        prefix = self.config.group_prefix
        if message.is_group and prefix and body.lower().startswith(prefix.lower()):
            return body[len(prefix) :].strip()
        return body

    # -- limits ------------------------------------------------------------------
    def _chat_window(self, first: InboundMessage, at: datetime) -> tuple[str, int]:
        """The per-chat limit's counter key and window index (minutes since the epoch)."""
        return f"chat|{first.chat_id}", int(at.timestamp() // 60)

    def _limit_reached(self, first: InboundMessage, at: datetime) -> str | None:
        cfg = self.config
        if cfg.rate_chat_per_minute > 0:
            key, window = self._chat_window(first, at)
            counter = self.tables.counters.get(key)
            if (
                counter is not None
                and counter.window == window
                and counter.count >= cfg.rate_chat_per_minute
            ):
                return "rate_limited_chat"
        if cfg.rate_sender_per_day > 0:
            replied = replies_to(self.tables.sender_replies, first.sender_id, _day(at))
            if replied >= cfg.rate_sender_per_day:
                return "rate_limited_sender"
        if cfg.daily_token_budget > 0:
            day = at.astimezone(UTC).date().isoformat()
            if used_on(self.tables.token_usage, day) >= cfg.daily_token_budget:
                return "token_budget"
        if cfg.loop_max_bot_replies > 0:
            chat_state = self._chat_state(first.chat_id)
            quiet_since = chat_state.last_bot_at
            long_quiet = (
                quiet_since is None or (at - quiet_since).total_seconds() > cfg.loop_quiet_reset_s
            )
            if not long_quiet and chat_state.consecutive_bot_replies >= cfg.loop_max_bot_replies:
                return "loop_guard"
        return None

    def _count_reply(self, first: InboundMessage, at: datetime) -> None:
        # A limit that is off costs no table write.
        if self.config.rate_chat_per_minute > 0:
            key, window = self._chat_window(first, at)
            counter = self.tables.counters.get(key)
            if counter is None or counter.window != window:
                counter = Counter(window=window)
            counter.count += 1
            self.tables.counters.put(key, counter)
        if self.config.rate_sender_per_day > 0:
            event = current_event()
            if event is None:  # a table write needs the record's partition
                raise RuntimeError("replies are counted only while a record is processed")
            count_reply(
                self.tables.sender_replies, first.sender_id, _day(at), event.message.partition
            )
        if self.config.loop_max_bot_replies <= 0:
            return
        chat_state = self._chat_state(first.chat_id)
        quiet = chat_state.last_bot_at is None or (
            (at - chat_state.last_bot_at).total_seconds() > self.config.loop_quiet_reset_s
        )
        self.tables.chats.put(
            first.chat_id,
            chat_state.model_copy(
                update={
                    "consecutive_bot_replies": 1
                    if quiet
                    else chat_state.consecutive_bot_replies + 1,
                    "last_bot_at": at,
                }
            ),
        )

    async def _skip(self, first: InboundMessage, reason: str, at: datetime) -> None:
        log.info("no reply in %s: %s", first.chat_id, reason)
        await self.topics.llm_calls.send(
            key=first.chat_id.encode(),
            value=LLMCall(
                call_id=f"skip-{turn_id_for(first)}",
                turn_id=turn_id_for(first),
                chat_id=first.chat_id,
                model="",
                base_url="",
                status="skipped",
                decision=reason,
                trace_id=first.trace_id,
            ),
        )
        if reason == "loop_guard":
            return  # a notice would only feed the loop
        window = self._chat_window(first, at)[1] if reason == "rate_limited_chat" else _day(at)
        notice_key = f"notice|{reason}|{first.chat_id}"
        counter = self.tables.counters.get(notice_key)
        if counter is not None and counter.window == window and counter.noticed:
            return
        digest = hashlib.sha1(f"{notice_key}|{window}".encode()).hexdigest()[:20]
        await self.topics.outbound.send(
            key=first.chat_id.encode(),
            value=OutboundMessage(
                outbound_id=f"notice-{digest}",  # one id per chat, limit and window
                chat_id=first.chat_id,
                account_id=first.account_id,
                text=self.config.limit_notice,
                kind="notice",
                trace_id=first.trace_id,
            ),
        )
        self.tables.counters.put(notice_key, Counter(window=window, count=1, noticed=True))

    def _chat_state(self, chat: str) -> ChatState:
        return self.tables.chats.get_or(chat, ChatState(chat_id=chat))


def register(
    app: Any,
    *,
    inbound_and_ticks: Any,
    config: GuardConfig,
    tables: GuardTables,
    topics: GuardTopics,
    ticks_topic_name: str,
) -> Guard:
    """Attach the guard agent and its burst timer to ``app``; return the Guard."""
    guard = Guard(config, tables, topics)

    @app.agent(inbound_and_ticks, name="guard")
    async def guard_agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                if message.topic == ticks_topic_name:
                    tick = json.loads(event.value)
                    with traced(str(tick.get("trace_id", "-"))):
                        await guard.on_tick(
                            str(tick["chat_id"]), int(tick["generation"]), bool(tick.get("flush"))
                        )
                    continue
                inbound = InboundMessage.model_validate_json(event.value)
            except (ValidationError, ValueError, KeyError, TypeError) as exc:
                await dead_letter(topics.dlq, event, "guard", f"invalid record: {exc}", exc)
                continue
            with traced(inbound.trace_id):
                try:
                    decision = await guard.on_inbound(inbound)
                    log.debug("message %s: %s", inbound.message_id, decision)
                except Exception as exc:  # one bad record must not stop the chat's pipeline
                    log.exception("guard failed on %s", inbound.message_id)
                    await dead_letter(topics.dlq, event, "guard", f"guard error: {exc!r}", exc)

    @app.timer(interval=0.1)
    async def close_quiet_bursts() -> None:
        if guard.timers.rescan and not app.rebalancing:
            guard.timers.rescan = False
            guard.overdue_after_rebalance()
        for due in guard.timers.pop_due(_now()):
            tick = {"chat_id": due.chat_id, "generation": due.generation, "trace_id": due.trace_id}
            await topics.ticks.send(key=due.chat_id.encode(), value=json.dumps(tick).encode())

    @app.on_rebalance_complete.connect
    async def _rescan(sender: Any, **kwargs: Any) -> None:
        guard.timers.rescan = True

    return guard
