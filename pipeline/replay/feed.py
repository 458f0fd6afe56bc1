"""Feeding a replay's worker its input in the recorded order: messages and operator controls.

The guard reads ``wa.inbound``, ``chat.control`` and ``guard.ticks`` as one stream, and Faust
takes records from the partitions of different topics in turn, not by time. Live, records
come as things happen, so the guard applies a pause between the messages before and after
it; copied all at once, the pause would land anywhere among the chat's messages. So the
feeder puts a recorded control on the run's control topic only once the worker has finished
every message recorded before it in that partition, and the messages after it only once the
control is applied (the run's consumer group's committed offsets say both).

Before each control it also closes, with a flush tick, every open burst of the partition that
was due before the control's time: live, the burst's timer had made its turn before the
control came (a persona, an account's model or rate limit must not reach that turn). Before a
``profile`` or ``account_profile``, which respond reads when it answers, it waits until every
turn of the partition is answered; an account's profile, of which a worker keeps one copy for
all its partitions, goes to no partition before every partition holding a copy of it has got
that far. The guard judges pauses, takeovers, bursts and windows by
the messages' own time, so with the recorded order it makes the recorded decisions.

Partitions are fed concurrently, each in order. An interrupted run goes on where it stopped:
what is on the run's topics already is the start of the same order and is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from pipeline.kafka.consumers import stop_consumer
from pipeline.replay.records import ControlInput, GroupWatch, flush_tick, selected_records
from pipeline.replay.selection import Selection
from tables import GuardState

log = logging.getLogger(__name__)

#: The guard's table of open bursts (``tables.guard_state_table``); Faust names its changelog
#: ``{app id}-guard_state-changelog``.
GUARD_STATE_TABLE = "guard_state"

#: Controls respond reads when it answers a turn (a persona, an account's model).
_READ_BY_RESPOND = frozenset({"profile", "account_profile"})


@dataclass(frozen=True)
class FeedTopics:
    """The topics a feeder reads and writes: ``source`` is the recorded ``wa.inbound``; the
    others are the run's (its inbound copy, controls, guard ticks, turns, and the changelog
    of its guard's ``guard_state`` table, where each chat's open burst and due time are)."""

    source: str
    inbound: str
    control: str
    ticks: str
    turns: str
    guard_state: str


class Feeder:
    """Feeds the selected messages of each partition (``bounds``: partition -> offsets
    ``[start, end)`` of ``topics.source``) and the recorded ``controls`` (Kafka timestamp
    order) to the run's topics, in the recorded order per partition (see the module doc).

    ``group`` is the run worker's consumer group, whose committed offsets say what it has
    finished. :meth:`run` raises what aiokafka raises."""

    def __init__(
        self,
        bootstrap: list[str],
        topics: FeedTopics,
        selection: Selection,
        bounds: dict[int, tuple[int, int]],
        controls: Sequence[ControlInput],
        group: str,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.selection = selection
        self.bounds = bounds
        self.controls = list(controls)
        self.watch = GroupWatch(bootstrap, group)
        self._bursts: dict[int, _OpenBursts] = {}
        self._meetings: dict[str, _Meeting] = {}

    async def run(self) -> None:
        """Feed every partition to its end; returns when every record is on the run's topics
        (not yet read by the worker: the caller watches the group for that)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20, acks="all")
        await self.watch.start()
        await producer.start()
        try:
            partitions = sorted(set(self.bounds) | {c.partition for c in self.controls})
            starts = [await self._start(p) for p in partitions]
            for _, waiting in starts:
                for record in waiting:
                    control = record.control
                    if control is not None and control.action == "account_profile":
                        meeting = self._meetings.setdefault(control.control_id, _Meeting())
                        meeting.expected += 1
            await asyncio.gather(
                *(
                    self._partition(producer, p, skip, waiting)
                    for p, (skip, waiting) in zip(partitions, starts, strict=True)
                )
            )
        finally:
            await producer.stop()
            for bursts in self._bursts.values():
                await bursts.stop()
            await self.watch.stop()

    async def _start(self, partition: int) -> tuple[int, list[ControlInput]]:
        """(messages to skip, controls still to feed) of ``partition``: what is on the run's
        topics was fed before an interruption."""
        inbound = TopicPartition(self.topics.inbound, partition)
        control = TopicPartition(self.topics.control, partition)
        on_topics = await self.watch.ends([inbound, control])
        waiting = [c for c in self.controls if c.partition == partition][on_topics[control] :]
        return on_topics[inbound], waiting

    async def _partition(
        self, producer: AIOKafkaProducer, partition: int, skip: int, waiting: list[ControlInput]
    ) -> None:
        sent: list[Any] = []
        bounds = self.bounds.get(partition)
        if bounds is not None:
            records = selected_records(
                self.bootstrap, self.topics.source, partition, bounds, self.selection
            )
            async for record in records:
                if skip:
                    skip -= 1
                    continue
                due = 0  # controls recorded before this message (in time order)
                while due < len(waiting) and waiting[due].timestamp_ms < record.timestamp:
                    due += 1
                if due:
                    await asyncio.gather(*sent)
                    sent = []
                    await self._controls(producer, partition, waiting[:due])
                    waiting = waiting[due:]
                sent.append(
                    await producer.send(
                        self.topics.inbound,
                        key=record.key,
                        value=record.value,
                        partition=partition,
                        timestamp_ms=record.timestamp,
                    )
                )
        await asyncio.gather(*sent)
        if waiting:
            await self._controls(producer, partition, waiting)

    async def _controls(
        self, producer: AIOKafkaProducer, partition: int, controls: list[ControlInput]
    ) -> None:
        """Put ``controls`` (recorded one after the other, no message between them) on the
        run's control topic once the worker has finished everything before them."""
        tps = {
            name: TopicPartition(topic, partition)
            for name, topic in (
                ("inbound", self.topics.inbound),
                ("control", self.topics.control),
                ("ticks", self.topics.ticks),
                ("turns", self.topics.turns),
            )
        }
        before = await self.watch.ends([tps["inbound"], tps["control"], tps["ticks"]])
        await self.watch.caught_up(before)
        due_at: dict[str, float] = {}
        if before[tps["inbound"]]:  # else no burst yet (and maybe no worker, no changelog)
            bursts = self._bursts.get(partition)
            if bursts is None:
                bursts = self._bursts[partition] = _OpenBursts(
                    self.bootstrap, TopicPartition(self.topics.guard_state, partition)
                )
            due_at = await bursts.due_at()
        for record in controls:
            closed = sorted(c for c, due in due_at.items() if due < record.timestamp_ms / 1000)
            if closed:
                await self._caught_up(tps["control"])  # the controls before it come first
                ticks = [
                    await producer.send(
                        self.topics.ticks,
                        key=chat.encode(),
                        value=flush_tick(chat),
                        partition=partition,
                    )
                    for chat in closed
                ]
                await asyncio.gather(*ticks)
                await self._caught_up(tps["ticks"])
                for chat in closed:
                    del due_at[chat]
                log.debug(
                    "partition %d: %d burst(s) closed before a control", partition, len(closed)
                )
            control = record.control
            if control is not None and control.action in _READ_BY_RESPOND:
                await self._caught_up(tps["turns"])  # answered with the profile they had
            if control is not None and control.action == "account_profile":
                # One worker keeps one copy of an account's profile for all its partitions:
                # no copy may come before every partition has answered what came before it.
                await self._meetings[control.control_id].arrive()
            await (
                await producer.send(
                    self.topics.control,
                    key=record.key,
                    value=record.value,
                    partition=partition,
                    timestamp_ms=record.timestamp_ms,
                )
            )
        await self._caught_up(tps["control"])

    async def _caught_up(self, *tps: TopicPartition) -> None:
        await self.watch.caught_up(await self.watch.ends(tps))


class _Meeting:
    """Where the partitions holding a copy of one account profile wait for each other."""

    def __init__(self) -> None:
        self.expected = 0
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def arrive(self) -> None:
        """Return once ``expected`` partitions have arrived."""
        self.arrived += 1
        if self.arrived >= self.expected:
            self.all_here.set()
        await self.all_here.wait()


class _OpenBursts:
    """Each chat's open burst in one partition, from the run's ``guard_state`` changelog:
    chat id -> the burst's due time (epoch seconds, the last message's ``received_at`` plus
    ``burst_quiet_s``). Read on to the changelog's end at every call."""

    def __init__(self, bootstrap: list[str], tp: TopicPartition) -> None:
        self.tp = tp
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self.started = False
        self.due: dict[str, float] = {}

    async def due_at(self) -> dict[str, float]:
        """The open bursts now (a copy the caller may change)."""
        if not self.started:
            await self.consumer.start()
            self.consumer.assign([self.tp])
            await self.consumer.seek_to_beginning(self.tp)
            self.started = True
        end = (await self.consumer.end_offsets([self.tp]))[self.tp]
        while await self.consumer.position(self.tp) < end:
            batch = await self.consumer.getmany(self.tp, timeout_ms=1000)
            for record in batch.get(self.tp, []):
                self._read(record.key, record.value)
        return dict(self.due)

    def _read(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        chat = key.decode(errors="replace")
        if chat.startswith('"'):  # a JSON-serialized key
            chat = str(json.loads(chat))
        state = None
        if value is not None:
            try:
                state = GuardState.model_validate_json(value)
            except ValidationError:
                log.warning("guard_state of %s does not decode; its burst is not followed", chat)
        if state is None or state.pending is None:
            self.due.pop(chat, None)
        else:
            self.due[chat] = state.pending.due_at

    async def stop(self) -> None:
        if self.started:
            await stop_consumer(self.consumer)
