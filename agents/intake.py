"""Flow control at the consumer: stop fetching a topic while too many of its records wait here.

respond never blocks its stream loop (that would stall every agent of the worker, see
``agents/respond.py``), so without this every fetched turn waits in memory and a backlog
after an outage grows the heap with the topic. :class:`Intake` takes the topic's partitions
out of the fetcher while ``high`` records are held and puts them back once no more than
``low`` are left.

It uses Faust's own per-partition backpressure, ``Consumer.on_buffer_full(tp)`` and
``Consumer.on_buffer_drop(tp)`` (faust/transport/conductor.py calls them when a stream's
buffer runs full and drains): the partition leaves the set the fetcher asks the broker for,
and the records already fetched are still delivered. ``Consumer.pause_partitions`` is not
used: ``Consumer.getmany`` drops the records of a paused partition still in the batch being
delivered, and they come back only after a restart; the turns behind them then waited for a
reply that never came (the stall an earlier attempt saw at 5,000 turns).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Intake"]


class Intake:
    """Pauses and resumes fetching ``topic``'s assigned partitions by how many records of it
    the caller holds (:meth:`update` with the count after each change).

    ``high``: held records at which fetching stops; ``low``: held records at or below which
    it starts again (``0 <= low < high``). Records fetched before the pause still arrive, so
    the count can pass ``high`` by up to a fetch batch. Raises ``ValueError`` for bad marks.
    """

    def __init__(self, app: Any, topic: str, high: int, low: int | None = None) -> None:
        low = high // 2 if low is None else low
        if high < 1 or not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
        self.app = app
        self.topic = topic
        self.high = high
        self.low = low
        self.paused = False
        #: How often fetching was stopped (for logs and the backlog benchmark).
        self.pauses = 0
        #: The most records held at once.
        self.peak = 0

    def update(self, held: int) -> None:
        """``held`` records wait now: pause at ``high`` (again on each call while over it,
        since Faust's own buffer drop may have resumed a partition), resume at ``low``."""
        if held > self.peak:
            self.peak = held
        if held >= self.high:
            if not self.paused:
                self.paused = True
                self.pauses += 1
                log.info(
                    "%d records of %s held; fetching it paused until %d are left",
                    held,
                    self.topic,
                    self.low,
                )
            self._each_partition("on_buffer_full")
        elif self.paused and held <= self.low:
            self.paused = False
            log.info(
                "%d records of %s held (at most %d so far); fetching it again",
                held,
                self.topic,
                self.peak,
            )
            self._each_partition("on_buffer_drop")

    def reset(self) -> None:
        """A rebalance starts: Faust rebuilds its fetch set from the new assignment."""
        self.paused = False

    def _each_partition(self, method: str) -> None:
        consumer = self.app.consumer
        call = getattr(consumer, method)
        for tp in consumer.assignment():
            if tp.topic == self.topic:
                call(tp)
