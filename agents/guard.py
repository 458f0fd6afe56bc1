"""guard: wa.inbound -> chat.turns (or pipeline.dlq), deciding what deserves an answer.

Per record, in order: decode (bad bytes go to the DLQ with the reason, and the next
record is processed); drop status posts, newsletters and ciphertext placeholders; drop
duplicates (WhatsApp emits a message again after decryption: the ciphertext placeholder
is skipped without being remembered, so the decrypted message with the same id still
counts once); an edit, revoke or reaction changes the open burst or is only recorded
(see below); a message the owner typed on the phone pauses the bot in that chat (human
takeover) and drops what was waiting; our own messages are never answered; old
messages, blocked or not-allowed chats, disabled or paused chats, system messages
(:data:`FATES`) and group messages that neither mention us nor start with the prefix are
ignored; a message the bot cannot read (a voice note, a sticker, a photo without a
caption) gets at most one ``unreadable_notice`` per chat and UTC day of its time. What
is left joins the chat's open burst, which becomes one Turn when the chat has been quiet
for ``burst_quiet_s``.

Every record that does not become (part of) a turn gets one ``GuardDecision`` on
``wa.decisions`` (keyed by chat) with its reason, a :data:`schemas.DecisionReason`, and is
counted by reason (``count_decision``, the ``guard_decisions_total`` metric): a skipped
burst gets one per message. So each valid inbound record ends in a Turn's
``message_ids`` or in exactly one decision. Output before state, as everywhere: a crash
between the two decides the record again, with the same ``decision_id``.

Edits, revokes, reactions (``InboundMessage.event``). An edit of a message still waiting
in the open burst replaces its text in the coming turn (``edited_in_burst``); a revoke
takes it out (``revoked_in_burst``; a burst left empty makes no turn). An edit or revoke
of a message that is not waiting (answered already, or never to be answered) is only
recorded (``edited_after_answer``, ``revoked_after_answer``): the answer stands. A
reaction is recorded (``reaction``) and never answered. None of them moves the burst's
due time.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from faust import current_event
from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from agents.text_limits import fit_messages
from schemas import (
    ChatControl,
    ChatState,
    DecisionReason,
    GuardDecision,
    InboundMessage,
    LLMCall,
    MessageType,
    OutboundMessage,
    Turn,
)
from schemas.chat_ids import is_newsletter, is_status_broadcast
from schemas.decision import decision_id_for
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

#: What becomes of a message, by its WhatsApp type:
#: ``text``: answered (a blank one is ``empty``); ``caption``: answered when it carries text
#: (a caption, a location's comment, a poll's question, a button's or list row's title),
#: else ``unreadable``; ``unreadable``: the bot cannot read it, so at most one notice per
#: chat and day; ``system``: not something a person wrote (WhatsApp's notifications, call
#: logs, protocol messages, the placeholder of a deleted message), ignored as
#: ``system_message``; ``placeholder``: ``ciphertext``, whose decrypted copy follows with
#: the same id.
MessageFate = Literal["text", "caption", "unreadable", "system", "placeholder"]

#: Every type of :data:`schemas.MessageType` (WA-JS's ``MSG_TYPE``) and its fate; a unit
#: test fails when a type has none. README.md lists the same table (WhatsApp section).
FATES: dict[MessageType, MessageFate] = {
    "chat": "text",
    "image": "caption",
    "video": "caption",
    "document": "caption",
    "location": "caption",
    "poll_creation": "caption",
    "event_creation": "caption",
    "groups_v4_invite": "caption",
    "hsm": "caption",
    "template_button_reply": "caption",
    "buttons_response": "caption",
    "list": "caption",
    "list_response": "caption",
    "interactive": "caption",
    "product": "caption",
    "order": "caption",
    "audio": "unreadable",
    "ptt": "unreadable",
    "ptv": "unreadable",
    "sticker": "unreadable",
    "vcard": "unreadable",
    "multi_vcard": "unreadable",
    "payment": "unreadable",
    "oversized": "unreadable",
    "native_flow": "unreadable",
    "unknown": "unreadable",
    "ciphertext": "placeholder",
    "revoked": "system",
    "reaction": "system",
    "protocol": "system",
    "gp2": "system",
    "notification": "system",
    "notification_template": "system",
    "group_notification": "system",
    "broadcast_notification": "system",
    "e2e_notification": "system",
    "call_log": "system",
}


@dataclass(frozen=True)
class GuardConfig:
    """Built from the settings by :func:`pipeline.config.stages.guard_config`; no defaults here."""

    burst_quiet_s: float
    ignore_older_than_s: float
    takeover_pause_s: float
    allow_list: frozenset[str]
    block_list: frozenset[str]
    group_prefix: str
    dedupe_window: int
    rate_chat_per_minute: int
    rate_sender_per_day: int
    daily_token_budget: int
    loop_max_bot_replies: int
    loop_quiet_reset_s: float
    limit_notice: str
    #: Sent at most once per chat and UTC day (of the message's time) for an unreadable message.
    unreadable_notice: str
    unreadable_notice_enabled: bool
    #: A turn's text at most this long, code points (WABOT_LLM_MAX_MESSAGE_CHARS); each
    #: message is cut on its own, the last one kept first (:func:`agents.text_limits.fit_messages`).
    max_turn_chars: int
    #: A replay: bursts close by message time and flush ticks only, never by the clock.
    replay: bool


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
    #: wa.decisions: one GuardDecision per record that does not become (part of) a turn.
    decisions: Any


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

    def __init__(
        self,
        config: GuardConfig,
        tables: GuardTables,
        topics: GuardTopics,
        count_decision: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.tables = tables
        self.topics = topics
        self.timers = BurstTimers()
        #: Called with the reason of every decision (the Prometheus counter).
        self.count_decision = count_decision

    # -- inbound -----------------------------------------------------------------
    async def on_inbound(self, message: InboundMessage) -> str:
        """Handle one record; return ``accepted`` or the reason it gets no answer."""
        chat = message.chat_id
        if is_status_broadcast(chat):
            return await self._decide(message, "status_broadcast")
        if is_newsletter(chat):
            return await self._decide(message, "newsletter")
        if message.event == "message" and message.type == "ciphertext":
            # Not remembered: the decrypted copy with the same id must still count.
            return await self._decide(message, "ciphertext")
        state = self.tables.state.get_or(chat, GuardState())
        if state.has_seen(message.message_id):
            return await self._decide(message, "duplicate")
        state.remember(message.message_id, self.config.dedupe_window)
        if state.pending is not None and message.received_at.timestamp() > state.pending.due_at:
            # The chat went quiet before this message came: the burst is over (its tick
            # is late, or this is a replay, which has no clock).
            await self._close_burst(chat, state)
        reason: DecisionReason | Literal["accepted"]
        if message.event != "message":
            reason = await self._decide(message, self._change(message, state))
        else:
            reason = self._classify(message)
            if reason == "accepted":
                self._add_to_burst(state, message)
                if self.config.burst_quiet_s <= 0:
                    await self._close_burst(chat, state)  # writes the state after the turn
                    return reason
            elif reason == "owner_takeover":
                await self._take_over(message, state)
            elif reason == "unreadable":
                await self._unreadable(message)
            else:
                await self._decide(message, reason)
        self.tables.state.put(chat, state)
        return reason

    def _classify(self, message: InboundMessage) -> DecisionReason | Literal["accepted"]:
        """The fate of a new message (``event == "message"``), judged at its ``received_at``."""
        cfg = self.config
        chat = message.chat_id
        at = message.received_at
        if message.from_me:
            return "own_message" if message.sent_by_bot else "owner_takeover"
        if (at - message.wa_timestamp).total_seconds() > cfg.ignore_older_than_s:
            return "too_old"
        if chat in cfg.block_list:
            return "blocked"
        if cfg.allow_list and chat not in cfg.allow_list:
            return "not_allowed"
        chat_state = self._chat_state(chat)
        if not chat_state.enabled or not self.account_enabled(message.account_id):
            return "disabled"
        if chat_state.is_paused(at):
            return "paused"
        fate = FATES.get(message.type, "unreadable")
        if fate in ("system", "placeholder"):
            return "system_message"
        if message.is_group and not self._addressed_in_group(message):
            return "group_not_addressed"
        has_text = bool(message.body.strip())
        if fate == "unreadable" or (fate == "caption" and not has_text):
            return "unreadable"
        if not has_text:
            return "empty"
        return "accepted"

    def _change(self, message: InboundMessage, state: GuardState) -> DecisionReason:
        """Apply an edit or revoke to the open burst, if its target waits there."""
        target = message.target_message_id
        assert target is not None  # InboundMessage requires it for every event but message
        if message.event == "edit":
            if state.edit_pending(target, message.body):
                return "edited_in_burst"
            return "edited_after_answer"
        if message.event == "revoke":
            return "revoked_in_burst" if state.revoke_pending(target) else "revoked_after_answer"
        return "reaction"

    async def _take_over(self, message: InboundMessage, state: GuardState) -> None:
        """The owner wrote from the phone: pause the chat from the message's time and drop
        the burst that was waiting (each of its messages is decided ``owner_takeover``)."""
        chat = message.chat_id
        at = message.received_at
        until = at + timedelta(seconds=self.config.takeover_pause_s)
        waiting = state.pending.messages if state.pending is not None else []
        for dropped in waiting:
            await self._decide(
                InboundMessage.model_validate(dropped), "owner_takeover", paused_until=until
            )
        await self._decide(message, "owner_takeover", paused_until=until)
        state.pending = None
        chat_state = self._chat_state(chat).model_copy(
            update={"paused_until": until, "consecutive_bot_replies": 0, "last_human_at": at}
        )
        self.tables.chats.put(chat, chat_state)
        log.info(
            "owner took over %s: the bot is quiet there until %s (%d waiting message(s) dropped)",
            chat,
            until.isoformat(),
            len(waiting),
        )

    async def _unreadable(self, message: InboundMessage) -> None:
        """Record a message the bot cannot read; one notice per chat and day of its time."""
        window = _day(message.received_at)
        notice_id = None
        if self.config.unreadable_notice_enabled:
            notice_id = self._notice_due("unreadable", message.chat_id, window)
        await self._decide(message, "unreadable", notice_outbound_id=notice_id)
        if notice_id is not None:
            await self._send_notice(
                message,
                "unreadable",
                window,
                notice_id,
                self.config.unreadable_notice,
                reply_to=message.message_id if message.is_group else None,
            )

    def _addressed_in_group(self, message: InboundMessage) -> bool:
        # Mentions arrive canonical (the gateway maps the bot's LID to account_id), and a
        # reply that quotes one of the bot's messages speaks to the bot as well.
        if message.account_id in message.mentioned_ids or message.quoted_from_me:
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
            await self._skip(messages, blocked, at)
            self.tables.state.put(chat, state)
            return
        text, cut = fit_messages(
            [self._strip_prefix(m) for m in messages], self.config.max_turn_chars
        )
        turn = Turn(
            turn_id=turn_id_for(first),
            chat_id=chat,
            account_id=first.account_id,
            sender_id=first.sender_id,
            seq=state.next_seq,
            message_ids=[m.message_id for m in messages],
            text=text,
            cut_chars=cut,
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
        if cut:
            log.warning(
                "turn %s: %d characters cut from its %d message(s) to fit "
                "WABOT_LLM_MAX_MESSAGE_CHARS=%d (the last message kept first)",
                turn.turn_id,
                cut,
                len(messages),
                self.config.max_turn_chars,
            )

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

    def _chat_rate(self, account_id: str) -> int:
        """Replies per chat per minute in the account's chats: its profile's limit (operator
        API, ``PUT /api/accounts/{id}/profile``), else ``WABOT_RATE_CHAT_PER_MINUTE``; 0: off."""
        profile = self.tables.chats.get(account_key(account_id))
        if profile is not None and profile.rate_chat_per_minute is not None:
            return profile.rate_chat_per_minute
        return self.config.rate_chat_per_minute

    def _limit_reached(self, first: InboundMessage, at: datetime) -> DecisionReason | None:
        cfg = self.config
        rate = self._chat_rate(first.account_id)
        if rate > 0:
            key, window = self._chat_window(first, at)
            counter = self.tables.counters.get(key)
            if counter is not None and counter.window == window and counter.count >= rate:
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
        if self._chat_rate(first.account_id) > 0:
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

    async def _skip(
        self, messages: list[InboundMessage], reason: DecisionReason, at: datetime
    ) -> None:
        """A burst over a limit: no turn; a skipped LLMCall for the turn (``llm.calls``), a
        decision for each of its messages and at most one notice per chat, limit and window
        (none for the loop guard)."""
        first = messages[0]
        turn_id = turn_id_for(first)
        log.info("no reply in %s: %s", first.chat_id, reason)
        await self.topics.llm_calls.send(
            key=first.chat_id.encode(),
            value=LLMCall(
                call_id=f"skip-{turn_id}",
                turn_id=turn_id,
                chat_id=first.chat_id,
                model="",
                base_url="",
                status="skipped",
                decision=reason,
                trace_id=first.trace_id,
            ),
        )
        window = self._chat_window(first, at)[1] if reason == "rate_limited_chat" else _day(at)
        # A notice would only feed a loop.
        notice_id = (
            None if reason == "loop_guard" else self._notice_due(reason, first.chat_id, window)
        )
        for i, message in enumerate(messages):
            await self._decide(
                message, reason, turn_id=turn_id, notice_outbound_id=notice_id if i == 0 else None
            )
        if notice_id is not None:
            await self._send_notice(first, reason, window, notice_id, self.config.limit_notice)

    # -- notices and decisions ---------------------------------------------------------
    def _notice_due(self, kind: str, chat: str, window: int) -> str | None:
        """The outbound_id of the notice ``kind`` for ``chat`` in ``window`` (a minute or day
        index), or None when that notice went out already. One id per chat, kind and window,
        so a record processed again yields the same id, which the sink sends once."""
        key = f"notice|{kind}|{chat}"
        counter = self.tables.counters.get(key)
        if counter is not None and counter.window == window and counter.noticed:
            return None
        return "notice-" + hashlib.sha1(f"{key}|{window}".encode()).hexdigest()[:20]

    async def _send_notice(
        self,
        message: InboundMessage,
        kind: str,
        window: int,
        outbound_id: str,
        text: str,
        reply_to: str | None = None,
    ) -> None:
        await self.topics.outbound.send(
            key=message.chat_id.encode(),
            value=OutboundMessage(
                outbound_id=outbound_id,
                chat_id=message.chat_id,
                account_id=message.account_id,
                text=text,
                kind="notice",
                reply_to_message_id=reply_to,
                trace_id=message.trace_id,
            ),
        )
        key = f"notice|{kind}|{message.chat_id}"
        self.tables.counters.put(key, Counter(window=window, count=1, noticed=True))

    async def _decide(
        self, message: InboundMessage, reason: DecisionReason, **details: Any
    ) -> DecisionReason:
        """Record that ``message`` gets no answer, and why (``details``: the optional fields
        of GuardDecision); count it; return ``reason``."""
        decision = GuardDecision(
            decision_id=decision_id_for(
                message.account_id, message.chat_id, message.message_id, reason
            ),
            account_id=message.account_id,
            chat_id=message.chat_id,
            sender_id=message.sender_id,
            message_id=message.message_id,
            event=message.event,
            target_message_id=message.target_message_id,
            type=message.type,
            reason=reason,
            received_at=message.received_at,
            trace_id=message.trace_id,
            **details,
        )
        await self.topics.decisions.send(key=message.chat_id.encode(), value=decision)
        if self.count_decision is not None:
            self.count_decision(reason)
        log.debug("message %s: no answer (%s)", message.message_id, reason)
        return reason

    def _chat_state(self, chat: str) -> ChatState:
        return self.tables.chats.get_or(chat, ChatState(chat_id=chat))

    # -- operator controls (chat.control, from the operator API) -------------------
    async def on_control(self, control: ChatControl) -> str:
        """Apply one operator control to ``chat_state`` (in stream context); return what it
        did (``pause``, ``resume``, ``profile``, ``account_profile``).

        A chat the bot has never seen gets its ChatState here. An account's profile is kept
        in the same table under :func:`account_key` (each partition has its copy: the API
        writes the record to every partition), with the account's system prompt in
        ``persona``; respond uses a chat's persona, else its account's, else the configured
        prompt, and the guard answers only where both chat and account are enabled."""
        if control.action == "account_profile":
            assert control.account_id is not None
            key = account_key(control.account_id)
            current = self.tables.chats.get_or(key, ChatState(chat_id=control.account_id))
            updated = current.model_copy(update=_profile_update(control))
            self.tables.chats.put(key, updated)
            log.info(
                "control %s: account %s profile set (system prompt %s, model %s, "
                "chat limit %s, enabled %s) by %s",
                control.control_id,
                control.account_id,
                "set" if updated.persona else "default",
                updated.model or "default",
                "default" if updated.rate_chat_per_minute is None else updated.rate_chat_per_minute,
                updated.enabled,
                control.operator or "-",
            )
            return control.action
        assert control.chat_id is not None
        chat = control.chat_id
        state = self._chat_state(chat)
        if control.action == "pause":
            state = state.model_copy(update={"paused_until": control.until})
            detail = f"paused until {control.until.isoformat() if control.until else '-'}"
        elif control.action == "resume":
            state = state.model_copy(update={"paused_until": None})
            detail = "resumed"
        else:
            state = state.model_copy(update=_profile_update(control))
            detail = (
                f"profile set (persona {'set' if state.persona else 'default'}, "
                f"enabled {state.enabled})"
            )
        self.tables.chats.put(chat, state)
        log.info(
            "control %s: %s %s by %s", control.control_id, chat, detail, control.operator or "-"
        )
        return control.action

    def account_enabled(self, account_id: str) -> bool:
        """False when an operator switched the whole account off."""
        found = self.tables.chats.get(account_key(account_id))
        return found is None or found.enabled


def account_key(account_id: str) -> str:
    """The ``chat_state`` key of an account's profile (never a chat id: ``|`` is not in one)."""
    return f"account|{account_id}"


def _profile_update(control: ChatControl) -> dict[str, Any]:
    update: dict[str, Any] = {"persona": control.persona or None}
    if control.action == "account_profile":  # the whole profile: None resets to the settings
        update["model"] = control.model or None
        update["rate_chat_per_minute"] = control.rate_chat_per_minute
    if control.enabled is not None:
        update["enabled"] = control.enabled
    return update


def register(
    app: Any,
    *,
    inbound_and_ticks: Any,
    config: GuardConfig,
    tables: GuardTables,
    topics: GuardTopics,
    ticks_topic_name: str,
    control_topic_name: str | None = None,
    count_decision: Callable[[str], None] | None = None,
) -> Guard:
    """Attach the guard agent and its burst timer to ``app``; return the Guard.

    ``count_decision(reason)`` is called for every GuardDecision (the metrics counter)."""
    guard = Guard(config, tables, topics, count_decision)

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
                if message.topic == control_topic_name:
                    control = ChatControl.model_validate_json(event.value)
                    with traced(control.trace_id):
                        await guard.on_control(control)
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
