"""Faust's Kafka transport with a shorter fetch wait.

Faust builds its consumer with ``fetch_max_wait_ms=1500``, hard-coded. aiokafka leaves a
partition that still has buffered records out of the next fetch request, and the broker
holds that request until new data arrives on the partitions it *does* name, or 1.5 s
pass. So a record produced to such a partition (llm.results right after a reply, say)
can wait 1.5 s before it is fetched: with an instant LLM each turn of a chat took ~1.6 s
per hop. A short wait (``WABOT_CONSUMER_FETCH_MAX_WAIT_MS``) costs a few idle fetches a
second and removes that stall.

It also makes a partition without a committed offset start from the beginning every
time. Faust starts fetching before it seeks the stream partitions to their committed
offsets, drops what was fetched in between, and aiokafka's ``seek_to_committed`` leaves a
partition with no committed offset (or offset 0) where the fetcher got to: records
fetched in that window were skipped. It bit the gateway restarting before its first
commit (replayed replies missing from the redelivery); any new consumer group over a
topic that already holds records is exposed the same way.

And it never commits past a record still being worked on. Stages that finish records out
of order (respond answers many chats of a partition at once) ack them out of order, and
Faust commits a partition up to the end of its first run of acked offsets. Its check that
the run starts where the last commit ended misses a gap of one record (faust-streaming
0.15.3, ``Consumer._new_offset``: ``min(acked) - committed > 1``, where the committed offset
is already the next one to read) and is skipped before the first commit: one unfinished
record with later ones of its partition acked was committed over, and lost if the worker
died before finishing it. :meth:`TunedConsumer._new_offset` commits nothing for a partition
while a tracked record below its acked offsets is unacked (records of partitions revoked
since they were fetched do not count).

Except ``wa.inbound`` of a live worker (``app.recent_start``): a consumer group with no
committed offset there starts at the first record younger than ``ignore_older_than_s``
(Kafka's offsets-for-times), since nothing older would be answered. With the long
retention replays need, the beginning can be days of traffic, all of it re-judged
(dead letters too) before the first new message is answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = getattr(self.app, "settings").consumer_fetch_max_wait_ms  # noqa: B009
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, int]:
        committed: Mapping[Any, int] = await super().seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return committed
        changelogs = self.app.tables.changelog_topics
        unset = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        recent: dict[str, float] = getattr(self.app, "recent_start", {})
        from_start = [tp for tp in unset if tp.topic not in recent]
        if from_start:
            consumer = self._ensure_consumer()
            await self.call_thread(consumer.seek_to_beginning, *from_start)
        if len(from_start) < len(unset):
            await self.call_thread(
                self._seek_to_recent, [tp for tp in unset if tp.topic in recent], recent
            )
        return committed

    async def _seek_to_recent(self, partitions: list[Any], recent: Mapping[str, float]) -> None:
        """Seek each partition to its first record younger than ``recent[topic]`` seconds,
        or to its end when there is none (``AIOKafkaConsumer.offsets_for_times``)."""
        consumer = self._ensure_consumer()
        now_ms = time.time() * 1000
        try:
            found = await consumer.offsets_for_times(
                {tp: int(now_ms - recent[tp.topic] * 1000) for tp in partitions}
            )
        except Exception as exc:  # a broker without timestamp look-ups: read it all
            log.warning("offsets-for-times failed (%r): reading %s from its start", exc, partitions)
            await consumer.seek_to_beginning(*partitions)
            return
        at_end = []
        starts: dict[str, list[str]] = {}
        for tp in partitions:
            position = found.get(tp)
            if position is None:
                at_end.append(tp)
            else:
                consumer.seek(tp, position.offset)
            starts.setdefault(tp.topic, []).append(
                f"[{tp.partition}] {'end' if position is None else position.offset}"
            )
        for topic, where in starts.items():
            log.info(
                "no committed offset on %d partitions of %s: starting at %s (nothing older "
                "than %gs is answered; WABOT_IGNORE_OLDER_THAN_S)",
                len(where),
                topic,
                ", ".join(sorted(where)),
                recent[topic],
            )
        if at_end:
            await consumer.seek_to_end(*at_end)


class TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Faust forgets the revoked partitions' acks; records of them fetched before the
        rebalance and never acked (a stage that drops its held records when partitions are
        revoked) are forgotten too, or they would hold the partitions' commits for good
        when they come back to this worker. Their next owner reads them again."""
        await super().on_partitions_revoked(revoked)
        self._unacked_messages -= {m for m in list(self._unacked_messages) if m.tp in revoked}

    #: Per commit: the lowest unacked offset of each partition (one pass over the records).
    _lowest_unacked: dict[Any, int] | None = None

    def _filter_committable_offsets(self, tps: Any) -> dict[Any, int]:
        lowest: dict[Any, int] = {}
        for message in list(self._unacked_messages):
            if not message.acked and message.offset < lowest.get(message.tp, message.offset + 1):
                lowest[message.tp] = message.offset
        self._lowest_unacked = lowest
        try:
            offsets: dict[Any, int] = super()._filter_committable_offsets(tps)
            return offsets
        finally:
            self._lowest_unacked = None

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for ``tp``, or None: Faust's answer, unless a record of
        ``tp`` below its acked offsets is still unacked (then nothing is committed now, and
        Faust's bookkeeping is left as it is for the next try)."""
        acked = self._acked[tp]
        if acked:
            lowest = self._lowest_unacked
            if lowest is None:  # called outside a commit round
                unacked = [
                    m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked
                ]
                first = min(unacked, default=None)
            else:
                first = lowest.get(tp)
            if first is not None and first < min(acked):
                return None
        offset: int | None = super()._new_offset(tp)
        return offset


class TunedTransport(faust_aiokafka.Transport):
    Consumer = TunedConsumer
