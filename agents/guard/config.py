"""What the guard is built with: its config (:class:`GuardConfig`, built from the settings), the
tables it keeps its state in and the topics it writes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import ChatState
from tables import Counter, GuardState, TypedTable

__all__ = ["GuardConfig", "GuardTables", "GuardTopics"]


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
