"""deliver: wa.outbound -> WhatsApp (through the gateway) and wa.delivery.

The sink of one account. Records are handled one at a time, in offset order, so the
replies of a chat go out in the order respond wrote them; pacing between sends is the
gateway's job (a bot that sends faster than a person types gets banned anyway).

Nothing sent twice: an outbound_id already in the ``sent_messages`` table is skipped; one
that is not is sent asking for a WhatsApp message id derived from it, and the gateway looks
in the chat before sending for that id or, since WhatsApp Web may assign its own, for the
text sent since the record was created (the case where the process died after the send but
before the table write). The table records the id the message really has (the send's
``wa_message_id``), so acks and echoes find it. The entry is written in stream context and
Faust flushes changelog writes before it commits the record's offset.

Nothing lost: while the page is not ready, the agent waits inside the record, so the
record is neither acked nor committed; a restart delivers it again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from schemas import DeliveryReceipt, OutboundMessage
from tables import remember_sent

log = logging.getLogger(__name__)


class SendResult(Protocol):
    @property
    def status(self) -> Literal["sent", "duplicate_skipped", "failed"]: ...

    @property
    def wa_message_id(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...


class Sender(Protocol):
    """What the agent needs of the gateway."""

    async def account(self) -> str: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...


def register(
    app: Any,
    *,
    source: Any,
    sender: Sender,
    sent: Any,
    delivery: Any,
    dlq: Any,
    max_age_s: float,
) -> Any:
    """Attach the deliver agent to ``app``; return the agent."""

    async def receipt(message: OutboundMessage, **fields: Any) -> None:
        record = DeliveryReceipt(
            outbound_id=message.outbound_id,
            chat_id=message.chat_id,
            account_id=message.account_id,
            trace_id=message.trace_id,
            **fields,
        )
        await delivery.send(key=message.chat_id.encode(), value=record)

    @app.agent(source, name="deliver")
    async def deliver(stream: Any) -> None:
        async for event in stream.events():
            try:
                message = OutboundMessage.model_validate_json(event.value)
            except (ValidationError, ValueError, TypeError) as exc:
                await dead_letter(dlq, event, "deliver", str(exc), exc)
                continue
            with traced(message.trace_id):
                account = await sender.account()
                if message.account_id != account:
                    continue  # another account's gateway sends this one
                known = sent.get(message.outbound_id)
                if known:
                    log.info("outbound %s already sent as %s", message.outbound_id, known)
                    await receipt(message, status="duplicate_skipped", wa_message_id=known)
                    continue
                age = (datetime.now(UTC) - message.created_at).total_seconds()
                if age > max_age_s:
                    reason = f"expired: {age:.0f}s old, older than {max_age_s:.0f}s"
                    log.warning("outbound %s not sent: %s", message.outbound_id, reason)
                    await receipt(message, status="failed", reason=reason)
                    continue
                outcome = await sender.send(message)
                await receipt(
                    message,
                    status=outcome.status,
                    wa_message_id=outcome.wa_message_id,
                    reason=outcome.reason if outcome.status == "failed" else None,
                )
                if outcome.wa_message_id is not None:
                    remember_sent(
                        sent,
                        outbound_id=message.outbound_id,
                        wa_message_id=outcome.wa_message_id,
                        chat_id=message.chat_id,
                        account_id=account,
                        trace_id=message.trace_id,
                    )
                log.info(
                    "outbound %s to %s: %s", message.outbound_id, message.chat_id, outcome.status
                )

    return deliver
