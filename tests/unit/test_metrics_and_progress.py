"""The cheaper Prometheus monitor counts like Faust's, and the progress board wakes waiters."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from agents.progress import ProgressBoard
from pipeline.observability.faust_metrics import PipelineMonitor

PER_TOPIC = "t_messages_received_per_topic_total"
PER_PARTITION = "t_messages_received_per_topics_partition"


def _value(registry: CollectorRegistry, name: str, **labels: Any) -> float | None:
    return registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})


def test_monitor_counts_per_topic_and_partition_across_rebalances() -> None:
    registry = CollectorRegistry()
    monitor = PipelineMonitor(FaustMetrics.create(registry, "t"))
    tp = TP("wa.inbound", 3)
    message = SimpleNamespace(tp=tp, offset=0)
    for offset in (7, 8):
        monitor.on_message_in(tp, offset, message)  # type: ignore[arg-type]
    assert _value(registry, PER_TOPIC, topic="wa.inbound") == 2
    assert _value(registry, PER_PARTITION, topic="wa.inbound", partition=3) == 8

    table = SimpleNamespace(name="windows")
    for _ in range(3):
        monitor.on_table_get(table, "k")  # type: ignore[arg-type]
    retrieved = {"table": "table.windows", "operation": "keys_retrieved"}
    assert _value(registry, "t_table_operations_total", **retrieved) == 3

    # A rebalance removes the topic and partition series; counting starts again after it
    # (a kept child that outlived its series would count into nothing).
    monitor.on_rebalance_start(SimpleNamespace(rebalancing_count=1))  # type: ignore[arg-type]
    assert _value(registry, PER_TOPIC, topic="wa.inbound") is None
    monitor.on_message_in(tp, 9, message)  # type: ignore[arg-type]
    assert _value(registry, PER_TOPIC, topic="wa.inbound") == 1
    assert _value(registry, PER_PARTITION, topic="wa.inbound", partition=3) == 9


def test_progress_board_wakes_on_apply_on_rebalance_and_at_the_deadline() -> None:
    async def scenario() -> None:
        board = ProgressBoard()

        waiter = asyncio.create_task(board.wait_change("a@c.us", 30))
        await asyncio.sleep(0)
        board.applied("b@c.us")  # another chat: no wake-up
        await asyncio.sleep(0.05)
        assert not waiter.done()
        board.applied("a@c.us")
        await asyncio.wait_for(waiter, 1)

        waiters = [asyncio.create_task(board.wait_change(c, 30)) for c in ("a@c.us", "b@c.us")]
        await asyncio.sleep(0)
        board.wake_all()
        await asyncio.wait_for(asyncio.gather(*waiters), 1)

        started = time.monotonic()
        await board.wait_change("a@c.us", 0.1)
        assert 0.09 <= time.monotonic() - started < 1

    asyncio.run(scenario())
