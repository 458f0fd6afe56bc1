"""Readiness is a question put to the broker (a metadata request), never a sleep."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError


class BrokerError(Exception):
    """A broker cannot be started, found or reached; the message says why."""


async def metadata_ok(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when the broker at ``bootstrap`` answers a metadata request with its brokers."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
        return bool(metadata.brokers())
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


async def wait_ready(
    bootstrap: str,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Poll until a metadata request succeeds; return seconds waited.

    ``alive`` reports whether the broker process still runs, so a broker that dies
    at start-up fails fast instead of after the whole timeout.
    """
    started = time.monotonic()
    delay = 0.05
    # aiokafka logs every refused connection as an ERROR; while we wait that is expected.
    client_log = logging.getLogger("aiokafka")
    previous = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        while True:
            if not alive():
                raise BrokerError(f"the broker process exited before {bootstrap} answered")
            if await metadata_ok(bootstrap):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise BrokerError(
                    f"no broker answered a metadata request at {bootstrap} in {timeout}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
    finally:
        client_log.setLevel(previous)
