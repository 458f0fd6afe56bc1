"""When each open burst is due: :class:`BurstTimers`, fed by the agent as messages join a burst
and drained by the timer task, which produces the ticks that close the bursts."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

__all__ = ["BurstTimers", "Due", "now"]


@dataclass(order=True)
class Due:
    """An open burst's due time (what the heap orders by) and the tick it asks for."""

    due_at: float
    chat_id: str = field(compare=False)
    generation: int = field(compare=False)
    trace_id: str = field(compare=False, default="-")


class BurstTimers:
    """When each open burst is due; fed by the agent, drained by the timer task."""

    def __init__(self) -> None:
        self._heap: list[Due] = []
        self.rescan = True

    def schedule(self, chat_id: str, generation: int, due_at: float, trace_id: str = "-") -> None:
        heapq.heappush(self._heap, Due(due_at, chat_id, generation, trace_id))

    def pop_due(self, now: float) -> list[Due]:
        due = []
        while self._heap and self._heap[0].due_at <= now:
            due.append(heapq.heappop(self._heap))
        return due


def now() -> float:
    """The clock the timers run on (wall time, seconds)."""
    return time.time()
