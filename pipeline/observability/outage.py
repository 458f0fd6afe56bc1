"""A broker outage as a person reads it: one WARNING when the connection is lost, a summary
every 30 s while it lasts, one INFO when the broker is back.

aiokafka logs every failed connect, metadata update, fetch, heartbeat and produce retry,
each at ERROR or WARNING: a 20 s outage of the broker wrote ~6,000 lines in 29 s (16,000
in a minute with the gateway and the archive consumer). :class:`BrokerOutage` is a log
filter on the worker's handler: the first such line opens the outage and is rewritten
into the one WARNING; later lines of the libraries are counted instead of written, and
every ``summary_every_s`` one WARNING says how long and how many. The worker's broker
watch (:func:`watch_broker`) asks the broker for metadata every few seconds while an
outage is open and closes it with one INFO line once the broker answers and the
libraries have been quiet for ``quiet_s``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: What the libraries say when they cannot reach a broker (aiokafka 0.14's messages).
CONNECTION_TROUBLE = (
    "Unable connect to node",
    "Unable to connect to node",
    "Unable to update metadata",
    "Unable to request metadata",
    "NodeNotReadyError",
    "KafkaConnectionError",
    "Connection refused",
    "Connect call failed",
    "coordinator dead",
    "Heartbeat failed",
    "Heartbeat session expired",
    "RequestTimedOutError",
)

#: Loggers whose lines are folded while an outage is open.
LIBRARY_LOGGERS = ("aiokafka", "faust", "mode")


class BrokerOutage(logging.Filter):
    """Fold the libraries' lines during a broker outage (thread-safe; one per process).

    ``clock`` is seconds, monotonic. Our own loggers' lines are never folded."""

    def __init__(self, summary_every_s: float = 30.0, quiet_s: float = 5.0) -> None:
        super().__init__()
        self.summary_every_s = summary_every_s
        self.quiet_s = quiet_s
        self.broker = "the broker"
        self.clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self.since: float | None = None
        self._last_summary = 0.0
        self._last_folded = 0.0
        self.folded = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(LIBRARY_LOGGERS):
            return True
        message = record.getMessage()
        now = self.clock()
        with self._lock:
            if self.since is None:
                if not any(sign in message for sign in CONNECTION_TROUBLE):
                    return True
                self.since = self._last_summary = self._last_folded = now
                self.folded = 0
                _rewrite(
                    record,
                    f"lost the connection to {self.broker} ({record.name}: {message}); "
                    f"retrying, a summary every {self.summary_every_s:g}s until it is back",
                )
                return True
            self.folded += 1
            self._last_folded = now
            if now - self._last_summary < self.summary_every_s:
                return False
            self._last_summary = now
            _rewrite(
                record,
                f"{self.broker} unreachable for {now - self.since:.0f}s: {self.folded} lines "
                f"of the libraries folded so far (last: {record.name}: {message})",
            )
            return True

    def close_if_quiet(self) -> tuple[float, int] | None:
        """End the outage when the libraries have been quiet for ``quiet_s``: (seconds it
        lasted, lines folded), or None when it goes on (or none is open)."""
        now = self.clock()
        with self._lock:
            if self.since is None or now - self._last_folded < self.quiet_s:
                return None
            lasted, folded = now - self.since, self.folded
            self.since = None
            self.folded = 0
            return lasted, folded


def _rewrite(record: logging.LogRecord, message: str) -> None:
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    record.msg, record.args = message, ()
    record.exc_info = record.exc_text = None


#: The process's one outage filter: the worker's log handler and its broker watch share it.
BROKER_OUTAGE = BrokerOutage()


def outage_filter() -> BrokerOutage:
    """The :data:`BROKER_OUTAGE` filter, for :func:`logging.config.dictConfig` (``"()"``)."""
    return BROKER_OUTAGE


async def watch_broker(
    answers: Callable[[], Awaitable[bool]],
    outage: BrokerOutage = BROKER_OUTAGE,
    every_s: float = 2.0,
) -> None:
    """Run until cancelled: while an outage is open, ask ``answers()`` (a metadata request)
    every ``every_s`` seconds; once it answers and the libraries are quiet, log the one INFO
    line that the broker is back."""
    while True:
        await asyncio.sleep(every_s)
        if not outage.active or not await answers():
            continue
        closed = outage.close_if_quiet()
        if closed is not None:
            lasted, folded = closed
            log.info(
                "%s is back after %.0fs (%d lines of the libraries folded)",
                outage.broker,
                lasted,
                folded,
            )
