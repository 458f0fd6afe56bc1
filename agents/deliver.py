"""deliver: wa.outbound -> WhatsApp (through the gateway) and wa.delivery.

The sink of one account. Many chats at once, each chat strictly in order: the stream loop
only dispatches, each record joins its chat's queue, and one task per chat works through
that queue, so the replies of a chat go out in the order respond wrote them while a chat
whose send is being retried (seconds of backoff) holds no other chat, not even one of its
partition. Pacing between sends is the gateway's job (a bot that sends faster than a
person types gets banned anyway).

Nothing sent twice: an outbound_id already in the ``sent_messages`` table is skipped; one
that is not is sent asking for a WhatsApp message id derived from it, and the gateway looks
in the chat before sending for that id or, since WhatsApp Web may assign its own, for the
text sent since the record was created (the case where the process died after the send but
before the table write). The table records the id the message really has (the send's
``wa_message_id``), so acks and echoes find it.

Tables change only in stream context, and the chat tasks run outside it: each record keeps
a copy of the context it was fetched in (:func:`contextvars.copy_context`, which holds
Faust's current event), and the table write runs in that copy, so it is attached to the
record's own event and partition as if it were written in the stream loop. The receipt
is acknowledged by the broker before the record is acked.

Nothing lost, nothing committed early: the stream runs with manual acks, a record is
finished when its receipt is on Kafka and its table entry made, and the records of each
partition are acked in offset order as they finish (:class:`InOrderAcks`: Faust's own
gap check misses a single unfinished record). So nothing is committed past an unfinished
record, and a crash replays every one of them. While the page is not ready, the chat's task
waits inside the record. A rebalance (:meth:`ChatLanes.revoke_all`, from the app's rebalance
hooks) drops the records still queued here unacked: the partitions' next owner replays them.

Memory: at most ``max_held`` records wait here; past that the stream loop waits for one to
finish (as the one-record-at-a-time agent always did), and Faust's buffer stops fetching.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from schemas import DeliveryReceipt, OutboundMessage
from tables import remember_sent

log = logging.getLogger(__name__)

#: Records held at most (queued or being sent) before the stream loop waits for room.
MAX_HELD = 1000


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


@dataclass
class Ticket:
    """One record's place in its partition's ack order."""

    ack: Callable[[], Awaitable[Any]]
    epoch: int
    finished: bool = False


class InOrderAcks:
    """Acks each partition's records in offset order, whatever order they finish in.

    Faust commits a partition up to its lowest unacked offset, but its check misses a gap of
    a single record (faust ``Consumer._new_offset`` compares the first acked offset with the
    committed one, ``min(acked) - committed > 1``, where the committed offset is already the
    next one to read; and it skips the check while nothing was committed): one record still
    being retried, with a later one of its partition acked, was committed and lost across a
    restart (reproduced). Acked in order, a partition's acks never have a gap.
    """

    def __init__(self) -> None:
        self._order: dict[Any, deque[Ticket]] = {}
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Rebalances started so far; a ticket of an earlier epoch is never acked."""
        return self._epoch

    def track(self, event: Any, ack: Callable[[], Awaitable[Any]]) -> Ticket:
        """Queue ``event`` (in fetch order: its partition's offset order) for acking."""
        ticket = Ticket(ack, self._epoch)
        self._order.setdefault(event.message.tp, deque()).append(ticket)
        return ticket

    async def finished(self, ticket: Ticket, tp: Any) -> None:
        """``ticket``'s record is done: ack it and every finished one after it, unless an
        earlier record of the partition is still open (then that one's finish acks it)."""
        if ticket.epoch != self._epoch:
            return  # fetched before a rebalance: replayed by the partition's owner
        ticket.finished = True
        order = self._order.get(tp)
        ready: list[Ticket] = []
        while order and order[0].finished:
            ready.append(order.popleft())
        for done in ready:
            await done.ack()

    def revoke_all(self) -> None:
        """A rebalance starts: nothing fetched before it is acked any more."""
        self._epoch += 1
        self._order.clear()


@dataclass(frozen=True)
class Held:
    """One outbound record between its fetch and its ack."""

    message: OutboundMessage
    event: Any
    """Faust's event: acked when the record is finished, and the table writes' anchor."""
    context: contextvars.Context
    """The stream context the record was fetched in (Faust's current event is this one)."""
    ticket: Ticket


class ChatLanes:
    """Per-chat ordered queues of held records, a task per busy chat, acks in offset order
    (:class:`InOrderAcks`) and a cap on what is held. ``work(held)`` finishes one record
    (True: ack it, False: leave it unacked for a replay); it must not raise."""

    def __init__(self, work: Callable[[Held], Awaitable[bool]], max_held: int = MAX_HELD) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be 1 or more, not {max_held}")
        self._work = work
        self.max_held = max_held
        self.held = 0
        self.acks = InOrderAcks()
        self._queues: dict[str, deque[Held]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._room.set()

    async def submit(
        self, message: OutboundMessage, event: Any, ack: Callable[[], Awaitable[Any]]
    ) -> None:
        """Queue ``message`` behind its chat's earlier records; ``ack`` acks its event. Called
        in the stream loop (its context is copied here); waits while ``max_held`` are held."""
        while self.held >= self.max_held:
            self._room.clear()
            await self._room.wait()
        held = Held(message, event, contextvars.copy_context(), self.acks.track(event, ack))
        self.held += 1
        chat = message.chat_id
        self._queues.setdefault(chat, deque()).append(held)
        if chat not in self._tasks:
            self._tasks[chat] = asyncio.create_task(self._run(chat), name=f"deliver-{chat}")

    async def skip(self, event: Any, ack: Callable[[], Awaitable[Any]]) -> None:
        """A record with nothing to send (dead-lettered): acked in its turn."""
        await self.acks.finished(self.acks.track(event, ack), event.message.tp)

    def revoke_all(self) -> None:
        """A rebalance starts: records not started yet are left unacked for the next owner
        (a send under way finishes; the next owner's chat check finds it)."""
        self.acks.revoke_all()

    def owned(self, held: Held) -> bool:
        """Whether ``held`` was fetched since the last rebalance started."""
        return held.ticket.epoch == self.acks.epoch

    @property
    def chats(self) -> int:
        """Chats with records held now."""
        return len(self._queues)

    async def _run(self, chat: str) -> None:
        queue = self._queues[chat]
        try:
            while queue:
                held = queue[0]
                try:
                    if self.owned(held) and await self._work(held):
                        await self.acks.finished(held.ticket, held.event.message.tp)
                except Exception:  # left unacked: replayed after a restart
                    log.exception("outbound %s: not acked", held.message.outbound_id)
                finally:
                    queue.popleft()
                    self.held -= 1
                    self._room.set()
        finally:
            del self._tasks[chat]
            if not queue:
                self._queues.pop(chat, None)


def register(
    app: Any,
    *,
    source: Any,
    sender: Sender,
    sent: Any,
    delivery: Any,
    dlq: Any,
    max_age_s: float,
    max_held: int = MAX_HELD,
) -> tuple[Any, ChatLanes]:
    """Attach the deliver agent to ``app``; return the agent and its lanes (whose
    :meth:`ChatLanes.revoke_all` belongs in the app's rebalance hooks)."""

    async def receipt(message: OutboundMessage, **fields: Any) -> None:
        record = DeliveryReceipt(
            outbound_id=message.outbound_id,
            chat_id=message.chat_id,
            account_id=message.account_id,
            trace_id=message.trace_id,
            **fields,
        )
        await (await delivery.send(key=message.chat_id.encode(), value=record))

    async def deliver_one(held: Held) -> bool:
        message = held.message
        with traced(message.trace_id):
            try:
                await handle(held)
            except Exception as exc:  # a bug must not stop the chat: the record goes to the DLQ
                log.exception("outbound %s could not be handled", message.outbound_id)
                await dead_letter(dlq, held.event, "deliver", f"delivery failed: {exc}", exc)
        return True

    async def handle(held: Held) -> None:
        message = held.message
        account = await sender.account()
        if message.account_id != account:
            return  # another account's gateway sends this one
        known = sent.get(message.outbound_id)
        if known:
            log.info("outbound %s already sent as %s", message.outbound_id, known)
            await receipt(message, status="duplicate_skipped", wa_message_id=known)
            return
        age = (datetime.now(UTC) - message.created_at).total_seconds()
        if age > max_age_s:
            reason = f"expired: {age:.0f}s old, older than {max_age_s:.0f}s"
            log.warning("outbound %s not sent: %s", message.outbound_id, reason)
            await receipt(message, status="failed", reason=reason)
            return
        outcome = await sender.send(message)
        await receipt(
            message,
            status=outcome.status,
            wa_message_id=outcome.wa_message_id,
            reason=outcome.reason if outcome.status == "failed" else None,
        )
        if outcome.wa_message_id is not None:
            # In the record's own stream context: Faust attaches the changelog write to it.
            held.context.run(
                remember_sent,
                sent,
                outbound_id=message.outbound_id,
                wa_message_id=outcome.wa_message_id,
                chat_id=message.chat_id,
                account_id=account,
                trace_id=message.trace_id,
            )
        log.info("outbound %s to %s: %s", message.outbound_id, message.chat_id, outcome.status)

    lanes = ChatLanes(deliver_one, max_held)

    @app.agent(source, name="deliver")
    async def deliver(stream: Any) -> None:
        async for event in stream.noack().events():
            try:
                message = OutboundMessage.model_validate_json(event.value)
            except (ValidationError, ValueError, TypeError) as exc:
                message = None
                await dead_letter(dlq, event, "deliver", str(exc), exc)

            async def ack(event: Any = event) -> None:
                await stream.ack(event)

            if message is None:
                await lanes.skip(event, ack)
            else:
                await lanes.submit(message, event, ack)

    return deliver, lanes
