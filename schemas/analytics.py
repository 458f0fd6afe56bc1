"""One pseudonymized event for analytics (topic ``analytics.events``), derived from the public
topics by the analytics agent so an analytics team can be given this topic alone.

No field carries a raw WhatsApp id, phone number or free text written by a person or an
endpoint: every id is a keyed pseudonym (``"p:"`` and 32 hex digits of an HMAC-SHA256 under
the operator's key, see ``agents/pseudonyms.py``), and ``text`` is filled only when the
operator opts in (``WABOT_ANALYTICS_INCLUDE_TEXT``). Ids that look harmless are pseudonymized
too: turn ids, outbound ids and the gateway's message ids are unkeyed hashes of chat and
account ids, so a raw one plus a guess of the number would confirm the number.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Record
from schemas.delivery import DeliveryStatus
from schemas.fields import UtcDatetime
from schemas.inbound import MessageType
from schemas.llm import LLMCallStatus
from schemas.outbound import OutboundKind

__all__ = ["AnalyticsEvent", "AnalyticsEventKind", "AnalyticsStatus", "Pseudonym"]

#: Which public topic the event was derived from: wa.inbound, wa.outbound, wa.delivery, llm.calls.
AnalyticsEventKind = Literal["inbound", "outbound", "delivery", "llm_call"]
#: A delivery receipt's status or an LLM call's status.
AnalyticsStatus = Literal[DeliveryStatus, LLMCallStatus]

#: The shape of every id in an analytics event: ``"p:"`` and 32 lowercase hex digits.
Pseudonym = Annotated[str, Field(pattern=r"^p:[0-9a-f]{32}$")]


class AnalyticsEvent(Record):
    """A flat, pseudonymized view of one inbound message, outbound message, delivery receipt or
    LLM call. Fields that do not apply to ``kind`` are null (or empty).

    Keyed on the topic by ``chat`` (the pseudonym), so one chat's events share a partition.
    ``trace_id`` is the pseudonym of the source record's trace id: events of one conversation
    turn share it, and an operator holding the key can find the turn's log lines.
    """

    kind: AnalyticsEventKind
    chat: Pseudonym = Field(description="the chat (a person or a group)")
    account: Pseudonym | None = Field(
        None, description="our own WhatsApp account (null for llm_call: LLMCall has none)"
    )
    is_group: bool
    at: UtcDatetime = Field(
        description="event time: WhatsApp's time (inbound), created (outbound), "
        "receipt time (delivery), call time (llm_call)"
    )

    # inbound
    sender: Pseudonym | None = Field(
        None, description="inbound: who wrote it (in a group, the author)"
    )
    message: Pseudonym | None = Field(
        None, description="inbound: the WhatsApp message; delivery: the message the gateway sent"
    )
    quoted_message: Pseudonym | None = Field(
        None, description="inbound, outbound: the message it replies to"
    )
    mentions: list[Pseudonym] = Field(
        default_factory=list, description="inbound: the people mentioned (pseudonyms)"
    )
    from_me: bool | None = Field(None, description="inbound: written from our account")
    sent_by_bot: bool | None = Field(None, description="inbound: our account's echo of a reply")
    message_type: MessageType | None = Field(None, description="inbound: WhatsApp's type")
    has_media: bool | None = Field(None, description="inbound: carries media")
    received_at: UtcDatetime | None = Field(
        None, description="inbound: when the gateway saw it (latency = received_at - at)"
    )

    # outbound, delivery, llm_call
    turn: Pseudonym | None = Field(
        None, description="outbound, llm_call: the conversation turn answered"
    )
    outbound: Pseudonym | None = Field(None, description="outbound, delivery: the outbound message")
    outbound_kind: OutboundKind | None = Field(None, description="outbound: reply, notice, ...")
    part: int | None = Field(None, ge=0, description="outbound: index of this part")
    parts: int | None = Field(None, ge=1, description="outbound: parts of the split reply")

    # delivery, llm_call
    status: AnalyticsStatus | None = Field(None, description="delivery or llm_call status")

    # llm_call
    call: Pseudonym | None = Field(None, description="llm_call: the call (one per attempt)")
    model: str | None = Field(None, description="llm_call: the model name")
    attempt: int | None = Field(None, ge=1, description="llm_call: attempt number")
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    total_tokens: int | None = Field(None, ge=0)
    latency_ms: float | None = Field(None, ge=0, description="llm_call: milliseconds")
    http_status: int | None = Field(None, ge=100, le=599)
    decision: str | None = Field(
        None,
        pattern=r"^[a-z_:]{1,64}$",
        description="llm_call skipped: the guard's reason, e.g. rate_limited_chat",
    )

    # text
    text_length: int | None = Field(
        None, ge=0, description="inbound, outbound: characters of the text (or caption)"
    )
    text: str | None = Field(
        None,
        description="inbound, outbound: the text, only with WABOT_ANALYTICS_INCLUDE_TEXT; "
        "@<number> mentions are replaced by pseudonyms, other numbers typed in it are not",
    )
