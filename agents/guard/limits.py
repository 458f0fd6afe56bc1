"""The reply limits, checked before any LLM call: replies per chat per minute (the account's
profile may change it), per sender per day, the account's daily token budget and the loop
guard; and the counters a reply adds to."""

from __future__ import annotations

from datetime import UTC, datetime

from faust import current_event

from agents.guard.config import GuardConfig, GuardTables
from agents.guard.controls import account_key, chat_state_of
from schemas import DecisionReason, InboundMessage
from tables import Counter, count_reply, replies_to, used_on

__all__ = ["Limits", "epoch_day"]


def epoch_day(at: datetime) -> int:
    """Days since the epoch, UTC: the window of the per-sender limit."""
    return int(at.timestamp() // 86400)


class Limits:
    """The limits of :class:`GuardConfig` over the guard's tables."""

    def __init__(self, config: GuardConfig, tables: GuardTables) -> None:
        self.config = config
        self.tables = tables

    def chat_window(self, first: InboundMessage, at: datetime) -> tuple[str, int]:
        """The per-chat limit's counter key and window index (minutes since the epoch)."""
        return f"chat|{first.chat_id}", int(at.timestamp() // 60)

    def chat_rate(self, account_id: str) -> int:
        """Replies per chat per minute in the account's chats: its profile's limit (operator
        API, ``PUT /api/accounts/{id}/profile``), else ``WABOT_RATE_CHAT_PER_MINUTE``; 0: off."""
        profile = self.tables.chats.get(account_key(account_id))
        if profile is not None and profile.rate_chat_per_minute is not None:
            return profile.rate_chat_per_minute
        return self.config.rate_chat_per_minute

    def reached(self, first: InboundMessage, at: datetime) -> DecisionReason | None:
        cfg = self.config
        rate = self.chat_rate(first.account_id)
        if rate > 0:
            key, window = self.chat_window(first, at)
            counter = self.tables.counters.get(key)
            if counter is not None and counter.window == window and counter.count >= rate:
                return "rate_limited_chat"
        if cfg.rate_sender_per_day > 0:
            replied = replies_to(self.tables.sender_replies, first.sender_id, epoch_day(at))
            if replied >= cfg.rate_sender_per_day:
                return "rate_limited_sender"
        if cfg.daily_token_budget > 0:
            day = at.astimezone(UTC).date().isoformat()
            if used_on(self.tables.token_usage, day) >= cfg.daily_token_budget:
                return "token_budget"
        if cfg.loop_max_bot_replies > 0:
            chat_state = chat_state_of(self.tables.chats, first.chat_id)
            quiet_since = chat_state.last_bot_at
            long_quiet = (
                quiet_since is None or (at - quiet_since).total_seconds() > cfg.loop_quiet_reset_s
            )
            if not long_quiet and chat_state.consecutive_bot_replies >= cfg.loop_max_bot_replies:
                return "loop_guard"
        return None

    def count_reply(self, first: InboundMessage, at: datetime) -> None:
        # A limit that is off costs no table write.
        if self.chat_rate(first.account_id) > 0:
            key, window = self.chat_window(first, at)
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
                self.tables.sender_replies, first.sender_id, epoch_day(at), event.message.partition
            )
        if self.config.loop_max_bot_replies <= 0:
            return
        chat_state = chat_state_of(self.tables.chats, first.chat_id)
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
