"""Sending bad input to the dead-letter topic (shared by agents; not an agent itself)."""

from __future__ import annotations

import logging
from typing import Any

from schemas import DeadLetter

log = logging.getLogger(__name__)


async def dead_letter(dlq: Any, event: Any, agent: str, reason: str, exc: BaseException) -> None:
    """Record ``event``'s original bytes with the reason; never raises."""
    message = event.message
    key = message.key if isinstance(message.key, bytes | None) else str(message.key).encode()
    raw = message.value if isinstance(message.value, bytes) else str(message.value).encode()
    letter = DeadLetter(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        raw=raw,
        reason=reason[:2000] or type(exc).__name__,
        error_type=type(exc).__name__,
        agent=agent,
    )
    log.warning(
        "dead letter from %s[%d]@%d: %s",
        message.topic,
        message.partition,
        message.offset,
        letter.reason.splitlines()[0],
    )
    try:
        await dlq.send(key=key, value=letter)
    except Exception:  # the DLQ itself failing must not stop the pipeline
        log.exception("could not write a dead letter for %s@%d", message.topic, message.offset)
