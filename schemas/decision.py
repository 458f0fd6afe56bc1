"""Why an inbound record got no answer (topic ``wa.decisions``).

The guard writes one :class:`GuardDecision` for every valid ``wa.inbound`` record that does
not become (part of) a turn, so each record of ``wa.inbound`` ends in exactly one of: a
Turn's ``message_ids``, a GuardDecision with its ``message_id``, or the dead-letter topic.
"""

from __future__ import annotations

import hashlib
from typing import Literal, get_args

from pydantic import Field

from schemas.base import Record
from schemas.fields import ChatId, UtcDatetime
from schemas.inbound import InboundEvent, MessageType

__all__ = ["DECISION_REASONS", "DecisionReason", "GuardDecision", "decision_id_for"]

#: The guard's reasons for not answering a record. A fixed set: it is also the ``reason``
#: label of the ``<app>_guard_decisions_total`` Prometheus counter. README.md explains each
#: one ("Why a message got no answer").
DecisionReason = Literal[
    "owner_takeover",
    "own_message",
    "duplicate",
    "ciphertext",
    "status_broadcast",
    "newsletter",
    "too_old",
    "blocked",
    "not_allowed",
    "disabled",
    "paused",
    "system_message",
    "group_not_addressed",
    "unreadable",
    "empty",
    "rate_limited_chat",
    "rate_limited_sender",
    "token_budget",
    "loop_guard",
    "edited_in_burst",
    "revoked_in_burst",
    "edited_after_answer",
    "revoked_after_answer",
    "reaction",
]

#: Every reason, in the order above.
DECISION_REASONS: tuple[str, ...] = get_args(DecisionReason)


def decision_id_for(account_id: str, chat_id: str, message_id: str, reason: str) -> str:
    """Deterministic: a record decided again (after a crash, in a replay) has the same id."""
    key = f"{account_id}|{chat_id}|{message_id}|{reason}"
    return hashlib.sha1(key.encode()).hexdigest()[:24]


class GuardDecision(Record):
    """One inbound record the guard did not turn into (part of) a turn, and why.

    Keyed by ``chat_id``. ``trace_id`` is the inbound record's. Times are the message's own
    (``received_at``, the gateway's stamp), the time every rule of the guard judges by.
    """

    decision_id: str = Field(
        min_length=1, description="sha1 of account|chat|message|reason, 24 hex digits"
    )
    account_id: ChatId
    chat_id: ChatId
    sender_id: ChatId
    message_id: str = Field(min_length=1, description="the inbound record's own message_id")
    event: InboundEvent = Field("message", description="the inbound record's event")
    target_message_id: str | None = Field(
        None, description="for an edit, revoke or reaction: the message it is about"
    )
    type: MessageType = Field(description="the inbound record's WhatsApp message type")
    reason: DecisionReason
    received_at: UtcDatetime = Field(description="when the gateway received the message")
    turn_id: str | None = Field(
        None,
        description="limit decisions: the turn that was not made (the skipped LLMCall's turn_id)",
    )
    paused_until: UtcDatetime | None = Field(
        None, description="owner_takeover: the bot is quiet in the chat until then"
    )
    notice_outbound_id: str | None = Field(
        None, description="the outbound_id of the notice sent with this decision, if one was"
    )
