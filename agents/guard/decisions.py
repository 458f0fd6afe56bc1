"""The :class:`Guard`: what each record becomes, kept apart from Faust's plumbing so each rule
reads on its own (the rules in order are in :mod:`agents.guard`'s overview): a message joins the
chat's open burst or gets one ``GuardDecision`` with its reason; a burst becomes one Turn, or a
skipped ``LLMCall`` when a limit is reached; the notices; the ticks that close bursts."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from agents.guard.config import GuardConfig, GuardTables, GuardTopics
from agents.guard.controls import account_enabled, apply_control, chat_state_of
from agents.guard.fates import FATES
from agents.guard.limits import Limits, epoch_day
from agents.guard.timers import BurstTimers, now
from agents.text_limits import fit_messages
from schemas import (
    ChatControl,
    ChatState,
    DecisionReason,
    GuardDecision,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    Turn,
)
from schemas.chat_ids import is_newsletter, is_status_broadcast
from schemas.decision import decision_id_for
from tables import Counter, GuardState, PendingBurst

__all__ = ["Guard", "turn_id_for"]

# One logger for the whole stage, whichever module of it writes.
log = logging.getLogger("agents.guard")


def turn_id_for(first: InboundMessage) -> str:
    """Deterministic: the same first message always makes the same turn id."""
    return hashlib.sha1(first.dedupe_key.encode()).hexdigest()[:24]


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
        self.limits = Limits(config, tables)
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
        window = epoch_day(message.received_at)
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
        if state.pending.due_at > now() + 0.01:
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
        blocked = self.limits.reached(first, at)
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
        self.limits.count_reply(first, at)
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
        window = (
            self.limits.chat_window(first, at)[1]
            if reason == "rate_limited_chat"
            else epoch_day(at)
        )
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
        return chat_state_of(self.tables.chats, chat)

    # -- operator controls (chat.control, from the operator API) -------------------
    async def on_control(self, control: ChatControl) -> str:
        """Apply one operator control to ``chat_state``; return what it did
        (:func:`agents.guard.controls.apply_control`)."""
        return apply_control(self.tables.chats, control)

    def account_enabled(self, account_id: str) -> bool:
        """False when an operator switched the whole account off."""
        return account_enabled(self.tables.chats, account_id)
