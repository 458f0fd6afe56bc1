"""The replay's progress display: a bar redrawn in place on a terminal, a plain line every
few seconds otherwise (a CI log, a file)."""

from __future__ import annotations

import sys
import time
from collections.abc import Hashable, Mapping
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def records_done(
    planned: Mapping[Hashable, int], committed: Mapping[Hashable, int]
) -> tuple[int, int]:
    """(records done, records in all) of a run's input, in one unit: records of its inbound
    and control topics, messages and controls alike, as the run's first line counts them.

    ``planned``: (topic, partition) -> records the run feeds there; ``committed``: the same
    keys -> the consumer group's committed offset (a fresh topic's offsets count its
    records; absent: nothing read). Done is capped per partition at what is planned, and the
    total is the plan's, never the broker's idea of the topics at the time of asking.
    """
    done = sum(min(max(0, committed.get(key, 0)), records) for key, records in planned.items())
    return done, sum(planned.values())


class Progress:
    """Records done of total (:func:`records_done`), their rate and ETA, and turns answered.

    ``out`` is where it writes (stderr by default); ``tty`` overrides the terminal check;
    ``every_s`` is the gap between plain lines when not on a terminal.
    """

    def __init__(
        self,
        label: str,
        out: TextIO | None = None,
        tty: bool | None = None,
        every_s: float = 5.0,
        width: int = 24,
    ) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.every_s = every_s
        self.width = width
        self.started = time.monotonic()
        self._first_done: int | None = None
        self._last_line = 0.0
        self._drawn = False
        self.line = ""

    def update(self, done: int, total: int, *, answered: int, turns: int) -> None:
        """Show ``done`` of ``total`` input records and ``answered`` of ``turns`` turns."""
        now = time.monotonic()
        if self._first_done is None:
            self._first_done, self.started = done, now
        elapsed = now - self.started
        rate = (done - self._first_done) / elapsed if elapsed > 0.5 else 0.0
        eta = f"ETA {_clock((total - done) / rate)}" if rate > 0 and done < total else "ETA -"
        if done >= total:
            eta = "reading done"
        fraction = done / total if total else 1.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        speed = f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
        self.line = (
            f"replay {self.label} [{bar}] {done:,}/{total:,} records {speed}/s {eta}, "
            f"turns answered {answered:,}/{turns:,}"
        )
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line)
            self.out.flush()
            self._drawn = True
        elif now - self._last_line >= self.every_s:
            self._last_line = now
            self.out.write(self.line + "\n")
            self.out.flush()

    def finish(self) -> None:
        """End the bar's line (on a terminal) or write the last state (elsewhere)."""
        if self.tty and self._drawn:
            self.out.write("\n")
        elif not self.tty and self.line:
            self.out.write(self.line + "\n")
        self.out.flush()
        self._drawn = False
