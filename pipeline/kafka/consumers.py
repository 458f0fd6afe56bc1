"""Stopping an aiokafka consumer without a stray ``CancelledError``.

aiokafka 0.14's consumer without a group (``NoGroupCoordinator.close``) cancels its
committed-offset task and awaits it; when that task was cancelled before it first ran (a
consumer stopped right after it started, as on an empty partition), the await raises
``CancelledError`` into the caller, which then looks cancelled itself: a replay ended with
status 0 and no word (reproduced with a one-record replay on Apache Kafka).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, swallowing the ``CancelledError`` of aiokafka's own cancelled
    task; a cancellation of the calling task still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
