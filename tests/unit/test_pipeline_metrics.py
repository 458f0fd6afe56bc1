"""The pipeline's own metrics without a broker: metered topics and sender, LLM calls, the
gateway's state read at scrape time, and records in per agent through the monitor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from pipeline.observability.faust_metrics import PipelineMonitor
from pipeline.observability.pipeline_metrics import MeteredSender, PipelineMetrics
from schemas import DeadLetter, DeliveryReceipt, LLMCall, OutboundMessage

pytestmark = pytest.mark.unit


class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Any] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes, value: Any) -> str:
        self.sent.append(value)
        return "ok"


def _metrics() -> tuple[PipelineMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = PipelineMetrics("t", registry)
    metrics.set_topics(dlq="dlq", delivery="delivery")
    return metrics, registry


def _v(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metered_topics_count_records_out_dead_letters_and_expired_sends() -> None:
    metrics, registry = _metrics()
    dlq = FakeTopic("dlq")
    delivery = FakeTopic("delivery")
    letter = DeadLetter(
        source_topic="wa.inbound",
        partition=0,
        offset=1,
        raw=b"x",
        reason="bad",
        error_type="ValidationError",
        agent="guard",
    )
    expired = DeliveryReceipt(
        outbound_id="o",
        chat_id="1@c.us",
        account_id="2@c.us",
        status="failed",
        reason="expired: 4000s old, older than 3600s",
    )

    async def run() -> None:
        assert await metrics.sending(dlq, "guard").send(key=b"k", value=letter) == "ok"
        sink = metrics.sending(delivery, "deliver")
        await sink.send(key=b"k", value=expired)
        await sink.send(key=b"k", value=expired.model_copy(update={"reason": "refused"}))

    asyncio.run(run())
    assert dlq.sent == [letter]
    out = {"topic": "dlq", "agent": "guard", "direction": "out"}
    assert _v(registry, "t_records_total", **out) == 1
    assert _v(registry, "t_dead_letters_total", agent="guard", error_type="ValidationError") == 1
    assert _v(registry, "t_sink_failures_total", reason="expired") == 1
    assert _v(registry, "t_sink_failures_total", reason="refused") == 0  # the sender counts it
    assert metrics.sending(dlq, "guard").get_topic_name() == "dlq"  # the rest goes through


def test_the_sender_times_sends_and_the_reply_latency_of_last_parts() -> None:
    metrics, registry = _metrics()
    outcomes = iter(["sent", "sent", "failed"])

    class Gateway:
        async def account(self) -> str:
            return "2@c.us"

        async def send(self, message: OutboundMessage) -> Any:
            return SimpleNamespace(status=next(outcomes))

    sender = MeteredSender(Gateway(), metrics)
    received = datetime.now(UTC) - timedelta(seconds=5)

    def part(n: int) -> OutboundMessage:
        return OutboundMessage(
            outbound_id=f"t-{n}",
            chat_id="1@c.us",
            account_id="2@c.us",
            text="hi",
            turn_id="t",
            part=n,
            parts=2,
            received_at=received,
        )

    async def run() -> None:
        assert await sender.account() == "2@c.us"
        for n in (0, 1, 1):
            await sender.send(part(n))

    asyncio.run(run())
    assert _v(registry, "t_sink_send_seconds_count", outcome="sent") == 2
    assert _v(registry, "t_sink_send_seconds_count", outcome="failed") == 1
    assert _v(registry, "t_sink_failures_total", reason="refused") == 1
    assert _v(registry, "t_reply_latency_seconds_count") == 1  # the last part, once sent
    assert 5 <= (_v(registry, "t_reply_latency_seconds_sum") or 0) < 30


def test_llm_calls_turns_in_flight_and_gateway_state() -> None:
    metrics, registry = _metrics()
    base = {"turn_id": "t", "chat_id": "1@c.us", "model": "m", "base_url": "http://x"}
    metrics.llm_calls(
        [
            LLMCall(call_id="1", status="retry", latency_ms=200, error="empty", **base),
            LLMCall(
                call_id="2",
                status="ok",
                latency_ms=500,
                prompt_tokens=7,
                completion_tokens=3,
                **base,
            ),
            LLMCall(call_id="3", status="fallback", **{**base, "base_url": ""}),
        ]
    )
    assert _v(registry, "t_llm_call_seconds_count", model="m", status="ok") == 1
    assert _v(registry, "t_llm_call_seconds_sum", model="m", status="ok") == 0.5
    assert _v(registry, "t_llm_call_seconds_count", model="m", status="retry") == 1
    assert _v(registry, "t_llm_call_seconds_count", model="m", status="fallback") is None
    assert _v(registry, "t_llm_tokens_total", model="m", kind="prompt") == 7
    assert _v(registry, "t_llm_tokens_total", model="m", kind="completion") == 3

    held = [3]
    metrics.track_turns(lambda: held[0])
    assert _v(registry, "t_turns_in_flight") == 3
    held[0] = 0
    assert _v(registry, "t_turns_in_flight") == 0

    gateway = SimpleNamespace(state="qr")
    metrics.track_gateway(gateway)
    assert _v(registry, "t_gateway_state", state="qr") == 1
    gateway.state = "ready"
    assert _v(registry, "t_gateway_state", state="ready") == 1
    assert _v(registry, "t_gateway_state", state="qr") == 0


class FakeStream:
    def __init__(self, prefix: str, shortlabel: str) -> None:
        self.prefix = prefix
        self.shortlabel = shortlabel
        self.task_owner = self  # any object a weak reference can point to


def test_the_monitor_counts_records_in_per_topic_and_agent() -> None:
    metrics, registry = _metrics()
    monitor = PipelineMonitor(FaustMetrics.create(registry, "f"))
    monitor.count_records_in(metrics.record_in)
    guard = FakeStream("guard", "Stream: x")
    derived = FakeStream("", "Stream: y")  # stream.noack(): no prefix
    for stream, topic in ((guard, "wa.inbound"), (guard, "wa.inbound"), (derived, "turns")):
        monitor.on_stream_event_in(TP(topic, 0), 1, stream, None)  # type: ignore[arg-type]
    labels = {"topic": "wa.inbound", "agent": "guard", "direction": "in"}
    assert _v(registry, "t_records_total", **labels) == 2
    # Outside an agent's task and without a prefix: "stream".
    assert _v(registry, "t_records_total", topic="turns", agent="stream", direction="in") == 1
