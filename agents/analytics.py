"""analytics: wa.inbound, wa.outbound, wa.delivery, llm.calls -> analytics.events, pseudonymized.

One stream over the four public topics; each record becomes one flat
:class:`schemas.AnalyticsEvent` keyed by the chat's pseudonym, so an analytics team can be
given ``analytics.events`` alone. Every id is a keyed pseudonym (``agents/pseudonyms.py``);
free text written by people or endpoints (message bodies, captions, file names, a failed
delivery's reason, an LLM error) is dropped, and message text is copied only when the
operator opts in (``WABOT_ANALYTICS_INCLUDE_TEXT``), with ``@<number>`` mentions replaced by
pseudonyms. A record that does not decode goes to the DLQ with the reason (the guard
dead-letters a bad ``wa.inbound`` record too, so it appears there once per agent).

Ordering: one chat's records of all four topics sit in the same partition number and are
read by one worker, and the events are keyed by the chat's pseudonym, so one chat's events
are in one partition in the order this agent read them. Across the four topics that order is
close to, not exactly, the order things happened: use ``at``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from agents.dead_letters import dead_letter
from agents.pseudonyms import Pseudonymizer
from schemas import (
    AnalyticsEvent,
    DeliveryReceipt,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    is_group,
)

log = logging.getLogger(__name__)

Kind = Literal["inbound", "outbound", "delivery", "llm_call"]

#: Guard decisions are short words like ``rate_limited_chat``; anything else becomes ``other``.
_DECISION = re.compile(r"[a-z_:]{1,64}")


@dataclass(frozen=True)
class Deriver:
    """Builds the analytics event of one decoded record (pure; no I/O)."""

    pseudonyms: Pseudonymizer
    include_text: bool = False

    def inbound(self, m: InboundMessage) -> AnalyticsEvent:
        p = self.pseudonyms
        return AnalyticsEvent(
            kind="inbound",
            trace_id=p.ref(m.trace_id),
            chat=p.chat(m.chat_id),
            account=p.chat(m.account_id),
            is_group=m.is_group,
            at=m.wa_timestamp,
            sender=p.chat(m.sender_id),
            message=p.ref(m.message_id),
            quoted_message=p.ref(m.quoted_message_id) if m.quoted_message_id else None,
            mentions=[p.chat(mentioned) for mentioned in m.mentioned_ids],
            from_me=m.from_me,
            sent_by_bot=m.sent_by_bot,
            message_type=m.type,
            has_media=m.has_media,
            received_at=m.received_at,
            text_length=len(m.body),
            text=p.scrub(m.body, m.mentioned_ids) if self.include_text else None,
        )

    def outbound(self, o: OutboundMessage) -> AnalyticsEvent:
        p = self.pseudonyms
        return AnalyticsEvent(
            kind="outbound",
            trace_id=p.ref(o.trace_id),
            chat=p.chat(o.chat_id),
            account=p.chat(o.account_id),
            is_group=is_group(o.chat_id),
            at=o.created_at,
            turn=p.ref(o.turn_id) if o.turn_id else None,
            outbound=p.ref(o.outbound_id),
            quoted_message=p.ref(o.reply_to_message_id) if o.reply_to_message_id else None,
            outbound_kind=o.kind,
            part=o.part,
            parts=o.parts,
            text_length=len(o.text),
            text=p.scrub(o.text) if self.include_text else None,
        )

    def delivery(self, d: DeliveryReceipt) -> AnalyticsEvent:
        p = self.pseudonyms
        return AnalyticsEvent(
            kind="delivery",
            trace_id=p.ref(d.trace_id),
            chat=p.chat(d.chat_id),
            account=p.chat(d.account_id),
            is_group=is_group(d.chat_id),
            at=d.at,
            outbound=p.ref(d.outbound_id),
            message=p.ref(d.wa_message_id) if d.wa_message_id else None,
            status=d.status,
        )

    def llm_call(self, c: LLMCall) -> AnalyticsEvent:
        p = self.pseudonyms
        decision = None
        if c.decision is not None:
            decision = c.decision if _DECISION.fullmatch(c.decision) else "other"
        return AnalyticsEvent(
            kind="llm_call",
            trace_id=p.ref(c.trace_id),
            chat=p.chat(c.chat_id),
            is_group=is_group(c.chat_id),
            at=c.at,
            turn=p.ref(c.turn_id),
            call=p.ref(c.call_id),
            status=c.status,
            model=c.model or None,
            attempt=c.attempt,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            total_tokens=c.total_tokens,
            latency_ms=c.latency_ms,
            http_status=c.http_status,
            decision=decision,
        )

    def derive(self, kind: Kind, raw: bytes | str) -> AnalyticsEvent:
        """Decode ``raw`` (JSON of the topic's record) and derive its event.

        Raises ``pydantic.ValidationError`` (a ``ValueError``) when it does not decode.
        """
        build: Callable[[Any], AnalyticsEvent] = getattr(self, kind)
        return build(_MODELS[kind].model_validate_json(raw))


_MODELS: Mapping[Kind, type[BaseModel]] = {
    "inbound": InboundMessage,
    "outbound": OutboundMessage,
    "delivery": DeliveryReceipt,
    "llm_call": LLMCall,
}


def register(
    app: Any,
    *,
    source: Any,
    kinds: Mapping[str, Kind],
    analytics: Any,
    dlq: Any,
    deriver: Deriver,
) -> Any:
    """Attach the analytics agent to ``app``; return the agent.

    ``source``: a raw-bytes stream over the topics named in ``kinds`` (topic name -> which
    record it carries); ``analytics``: the topic the events go to (AnalyticsEvent codec);
    ``dlq``: the dead-letter topic.
    """

    @app.agent(source, name="analytics")
    async def derive_analytics(stream: Any) -> None:
        async for event in stream.events():
            kind = kinds.get(event.message.topic)
            if kind is None:  # not one of ours; cannot happen with the wiring's source
                continue
            try:
                derived = deriver.derive(kind, event.value)
            except (ValidationError, ValueError, TypeError) as exc:
                reason = f"invalid {kind} record for analytics: {exc}"
                await dead_letter(dlq, event, "analytics", reason, exc)
                continue
            await analytics.send(key=derived.chat.encode(), value=derived)

    return derive_analytics
