"""Flow control at the consumer: stop fetching a topic while too many records wait here.

respond never blocks its stream loop (that would stall every agent of the worker, see
``agents/respond.py``), so without this every fetched turn waits in memory and a backlog
after an outage grows the heap with the topic. :class:`Intake` takes the topic's partitions
out of the fetcher while ``high`` records are held and puts them back once no more than
``low`` are left.

The guard gets an intake of its own (:class:`Outstanding`): it stops fetching wa.inbound
while it has made ``high`` turns that respond has not finished. Without it, a backlog after
an outage starved the replies: aiokafka hands out a partition's fetched records a whole
fetch response at a time (``Fetcher.fetched_records`` drains partitions in the order their
responses came), and Faust delivers every topic through one loop that waits whenever an
agent's buffer is full; so the guard, reading the waiting messages, held chat.turns and
llm.results back. After 200,000 waiting messages the worker answered ~10 turns a second for
the five minutes the guard took to read them all, then 170 a second. Paused, wa.inbound's
partitions leave the set Faust asks the fetcher for, and the turns and results flow.

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

__all__ = ["Intake", "Outstanding"]


class Intake:
    """Pauses and resumes fetching ``topic``'s assigned partitions by how many records the
    caller holds (:meth:`update` with the count after each change).

    ``high``: held records at which fetching stops; ``low``: held records at or below which
    it starts again (``0 <= low < high``). Records fetched before the pause still arrive, so
    the count can pass ``high`` by up to a fetch batch. ``held`` says what the count counts,
    for the log lines (default: "records of <topic> held"). Raises ``ValueError`` for bad
    marks.
    """

    def __init__(
        self,
        app: Any,
        topic: str,
        high: int,
        low: int | None = None,
        held: str = "",
    ) -> None:
        low = high // 2 if low is None else low
        if high < 1 or not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
        self.app = app
        self.topic = topic
        self.held = held or f"records of {topic} held"
        self.high = high
        self.low = low
        self.paused = False
        #: How often fetching was stopped (for logs and the backlog benchmark).
        self.pauses = 0
        #: The most records held at once.
        self.peak = 0
        self._assigned: list[Any] | None = None
        self._generation: Any = None

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
                    "%d %s; fetching %s paused until %d are left",
                    held,
                    self.held,
                    self.topic,
                    self.low,
                )
            self._each_partition("on_buffer_full")
        elif self.paused and held <= self.low:
            self.paused = False
            log.info(
                "%d %s (at most %d so far); fetching %s again",
                held,
                self.held,
                self.peak,
                self.topic,
            )
            self._each_partition("on_buffer_drop")

    def reset(self) -> None:
        """A rebalance starts: Faust rebuilds its fetch set from the new assignment."""
        self.paused = False
        self._assigned = None

    def _each_partition(self, method: str) -> None:
        call = getattr(self.app.consumer, method)
        for tp in self._partitions():
            call(tp)

    def _partitions(self) -> list[Any]:
        """``topic``'s assigned partitions, looked up again after each rebalance: Faust's
        ``consumer.assignment()`` builds a TP for every assigned partition, changelogs
        included (~0.2 ms for 200), and :meth:`update` runs for every record held."""
        generation = getattr(self.app, "consumer_generation_id", None)
        if self._assigned is None or generation != self._generation:
            assigned = self.app.consumer.assignment()
            self._assigned = [tp for tp in assigned if tp.topic == self.topic]
            self._generation = generation
        return self._assigned


class Outstanding:
    """Records one agent made that the next has not finished yet, as the count of an
    :class:`Intake` on the first agent's source: the guard's turns that respond has not
    answered, pausing wa.inbound (see the module doc).

    :meth:`made` after each record sent, :meth:`finished` when the next agent is done with
    one (answered, dead-lettered or given up), :meth:`reset` when a rebalance starts (the
    records in transit may go to another worker). Records made before this process started
    are not counted, so ``finished`` never takes the count below 0: the count errs low (the
    agent runs a little further ahead), not high (it would wait for records never coming).
    """

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.count = 0

    def made(self) -> None:
        self.count += 1
        self.intake.update(self.count)

    def finished(self) -> None:
        if self.count:
            self.count -= 1
        self.intake.update(self.count)

    def reset(self) -> None:
        self.count = 0
        self.intake.reset()
