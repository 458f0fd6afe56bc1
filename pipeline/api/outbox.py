"""The API's only way to change the bot: records produced to Kafka.

- :meth:`Outbox.control` writes a :class:`schemas.ChatControl` to ``chat.control`` keyed by
  chat id (the partition of the chat's inbound messages, so the guard applies it in order
  with them); an account's profile goes to every partition (each partition's guard keeps a
  copy beside the chats it owns).
- :meth:`Outbox.outbound` writes a manual :class:`schemas.OutboundMessage` to ``wa.outbound``,
  which the gateway's sink sends like any reply (and skips when its ``outbound_id`` was sent).
- :class:`Scheduler` produces held manual messages (``manual_messages.state = scheduled``)
  when their ``send_at`` comes, priority 1 first. Produced first, marked second: a crash in
  between produces the message again with the same ``outbound_id``, which the sink skips.
  Each due message is handled on its own: one that can never be sent (its record does not
  validate, or the broker refuses that record) is marked ``failed`` with the reason and
  dead-lettered to ``pipeline.dlq``, and the next one is sent; a broker that cannot be
  reached holds them all for the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from pydantic import ValidationError

from pipeline.api.queries import ApiStore
from pipeline.config.settings import Settings
from pipeline.kafka.setup import TopicSpec, ensure_topics
from pipeline.store.models import ManualMessageRow
from pipeline.store.writer import is_unavailable
from schemas import ChatControl, DeadLetter, OutboundMessage

__all__ = [
    "NotStarted",
    "Outbox",
    "Scheduler",
    "broker_trouble",
    "manual_outbound",
    "outbound_for",
    "refusal",
]

log = logging.getLogger(__name__)

#: What the broker answers about one record (too large, malformed): sending it again fails
#: the same way, so the message fails; any other broker error is the broker's state.
_RECORD_REFUSED = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    InvalidMessageError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)


class NotStarted(RuntimeError):
    """The outbox's producer is not running (the broker was not reached yet)."""


def broker_trouble(exc: BaseException) -> bool:
    """True when producing failed because of the broker's state (down, no leader, timed
    out, the producer not started): the same record may go through later. False for a
    refusal of the record itself and for any error that is not the broker's."""
    if isinstance(exc, _RECORD_REFUSED):
        return False
    return isinstance(exc, KafkaError | NotStarted | TimeoutError | OSError)


def refusal(exc: ValidationError) -> tuple[str, str]:
    """The field a record's validation refused (``body`` when it names none) and why:
    ``("chat_id", "chat_id: status@broadcast is never answered")``."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or "body"
    reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return field, reason if reason.startswith(field) else f"{field}: {reason}"


class Outbox:
    """An aiokafka producer for ``chat.control`` and ``wa.outbound`` (acks=all)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.control_topic = settings.topic("control")
        self.outbound_topic = settings.topic("outbound")
        self.dlq_topic = settings.topic("dlq")
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the topics it writes when missing (the worker's partition count: the
        guard reads chat.control co-partitioned with wa.inbound), then start the producer."""
        s = self.settings
        days = str(round(s.topic_retention_days * 86_400_000))
        await ensure_topics(
            s.bootstrap_servers,
            [
                TopicSpec(
                    name, s.topic_partitions, s.topic_replication_factor, {"retention.ms": days}
                )
                for name in (self.control_topic, self.outbound_topic, self.dlq_topic)
            ],
            s.broker_start_timeout,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, acks="all", request_timeout_ms=10_000
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise NotStarted("the outbox is not started")
        return self.producer

    async def control(self, control: ChatControl) -> None:
        """Produce ``control``; an account's to every partition. Returns once the broker
        has it (raises aiokafka's errors otherwise)."""
        producer = self._producer()
        value = control.model_dump_json().encode()
        key = control.key.encode()
        if control.action == "account_profile":
            partitions = await producer.partitions_for(self.control_topic)
            for partition in sorted(partitions):
                await producer.send_and_wait(
                    self.control_topic, key=key, value=value, partition=partition
                )
            return
        await producer.send_and_wait(self.control_topic, key=key, value=value)

    async def outbound(self, message: OutboundMessage) -> None:
        """Produce ``message`` to wa.outbound keyed by its chat; returns once the broker
        has it (raises aiokafka's errors, or :class:`NotStarted`)."""
        producer = self._producer()
        await producer.send_and_wait(
            self.outbound_topic,
            key=message.chat_id.encode(),
            value=message.model_dump_json().encode(),
        )

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Produce ``letter`` to pipeline.dlq under its original key; raises as
        :meth:`outbound`."""
        producer = self._producer()
        await producer.send_and_wait(
            self.dlq_topic, key=letter.key, value=letter.model_dump_json().encode()
        )

    async def broker_ok(self, timeout: float = 5.0) -> bool:
        """True when the broker answers a metadata request within ``timeout`` seconds."""
        if self.producer is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self.producer.client.fetch_all_metadata()
        except Exception:
            return False
        return True


def manual_outbound(outbound_id: str, chat_id: str, account_id: str, text: str) -> OutboundMessage:
    """The wa.outbound record of a manual message. Raises pydantic's ValidationError when
    the sink would not send it (:class:`schemas.OutboundMessage`'s rules: a blank text,
    ``status@broadcast``, an id that is not a WhatsApp id...; see :func:`refusal`)."""
    return OutboundMessage(
        outbound_id=outbound_id, chat_id=chat_id, account_id=account_id, text=text, kind="manual"
    )


def outbound_for(row: ManualMessageRow) -> OutboundMessage:
    """The wa.outbound record of a stored manual message; raises as
    :func:`manual_outbound` (a row stored by a version that did not check)."""
    return manual_outbound(row.outbound_id, row.chat_id, row.account_id, row.text)


class Scheduler:
    """Every ``interval_s``: produce the held messages that are due, then mark them."""

    def __init__(self, store: ApiStore, outbox: Outbox, interval_s: float) -> None:
        self.store = store
        self.outbox = outbox
        self.interval_s = interval_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now (a message was just stored)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception as exc:  # the store is down: try again later
                if not is_unavailable(exc):
                    log.exception("scheduler: could not send due messages")
                else:
                    log.warning("scheduler: store unavailable (%s)", type(exc).__name__)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def send_due(self) -> int:
        """Produce every due message, each on its own; return how many were produced.

        A message that cannot be sent ends ``failed`` (see :meth:`_fail`) and the next one
        is taken. When the broker cannot be reached the round ends there: the rest stay
        held for the next round. Store errors are raised (the round ends, nothing lost)."""
        sent = 0
        for row in await self.store.due(datetime.now(UTC)):
            try:
                await self.outbox.outbound(outbound_for(row))
            except Exception as exc:
                if broker_trouble(exc):
                    self._held(row, exc)
                    return sent
                if isinstance(exc, ValidationError):
                    reason = refusal(exc)[1]
                else:
                    reason = f"not produced: {type(exc).__name__}: {exc}"
                if not await self._fail(row, reason, exc):
                    return sent
                continue
            await self.store.mark_produced(row.outbound_id)
            log.info("manual message %s produced (priority %d)", row.outbound_id, row.priority)
            sent += 1
        return sent

    @staticmethod
    def _held(row: ManualMessageRow, exc: BaseException) -> None:
        log.warning(
            "scheduler: the broker did not take manual message %s (%s); the due messages stay held",
            row.outbound_id,
            type(exc).__name__,
        )

    async def _fail(self, row: ManualMessageRow, reason: str, exc: Exception) -> bool:
        """Dead-letter ``row`` (the row as JSON, keyed by its chat), then mark it
        ``failed`` with ``reason``; True when done. False when the broker cannot take the
        dead letter now: the row stays as it is, and the next round tries again."""
        raw = json.dumps(
            {
                "outbound_id": row.outbound_id,
                "chat_id": row.chat_id,
                "account_id": row.account_id,
                "text": row.text,
                "priority": row.priority,
                "send_at": row.send_at.isoformat() if row.send_at else None,
                "operator": row.operator,
            },
            ensure_ascii=False,
        ).encode()
        letter = DeadLetter(
            source_topic="manual_messages",
            partition=-1,
            offset=-1,
            key=(row.chat_id or "").encode(),
            raw=raw,
            reason=reason[:2000] or type(exc).__name__,
            error_type=type(exc).__name__,
            agent="api-scheduler",
        )
        try:
            await self.outbox.dead_letter(letter)
        except Exception as error:
            if broker_trouble(error):
                self._held(row, error)
                return False
            log.error(
                "scheduler: no dead letter for manual message %s", row.outbound_id, exc_info=error
            )
        await self.store.mark_failed(row.outbound_id, reason)
        log.warning("manual message %s failed: %s", row.outbound_id, reason)
        return True
