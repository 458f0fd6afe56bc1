"""The gateway's metrics end to end: look-alike page in real Chromium, Apache Kafka, a
pipeline worker and a gateway process. After one reply is delivered, the gateway's /metrics
says it is ready and shows the send and the reply's latency, and no failure."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.dev.lookalike import LookalikeConfig
from pipeline.dev.lookalike.server import run_in_thread
from pipeline.gateway.page import browsers_on
from pipeline.observability.faust_metrics import metric_prefix
from tests.conftest import Broker
from tests.conversation import Conversation
from tests.e2e.test_gateway import ME, Stack

pytestmark = pytest.mark.e2e

CUSTOMER = "4915333333333@c.us"


def scrape(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = stack.gateway.get("/metrics").decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_gateway_state_and_sink_metrics(kafka_broker: Broker, tmp_path: Path) -> None:
    lookalike = run_in_thread(LookalikeConfig(me=ME, keep_message_ids=True))
    conv = Conversation(kafka_broker, tmp_path, WABOT_METRICS_PUBLIC="false")
    stack = Stack(conv, lookalike, tmp_path, "kept")
    p = metric_prefix(conv.app_id)
    try:
        conv.start_worker()
        stack.start_gateway()

        async def run() -> None:
            await stack.wait_state("qr")
            assert scrape(stack)[(f"{p}_gateway_state", frozenset({("state", "qr")}))] == 1
            stack.post("scan")
            await stack.wait_state("ready")
            stack.post("message", {"chat": CUSTOMER, "body": "Do you deliver?"})
            await stack.wait_for("the reply", lambda: len(stack.bot_messages(CUSTOMER)) == 1)

        asyncio.run(run())
        deadline = time.monotonic() + 10
        while True:  # the histogram is observed right after the send returns
            samples = scrape(stack)
            sends = samples.get((f"{p}_sink_send_seconds_count", frozenset({("outcome", "sent")})))
            if sends == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        state = {dict(k[1])["state"]: v for k, v in samples.items() if k[0] == f"{p}_gateway_state"}
        assert state["ready"] == 1 and sum(state.values()) == 1, state
        assert sends == 1
        assert samples[(f"{p}_sink_send_seconds_sum", frozenset({("outcome", "sent")}))] > 0
        assert samples[(f"{p}_reply_latency_seconds_count", frozenset())] == 1
        assert samples[(f"{p}_reply_latency_seconds_sum", frozenset())] > 0
        failures = {
            dict(k[1])["reason"]: v
            for k, v in samples.items()
            if k[0] == f"{p}_sink_failures_total"
        }
        assert failures == {"refused": 0, "expired": 0, "error": 0}
        out = frozenset(
            {("topic", conv.topics["inbound"]), ("agent", "gateway"), ("direction", "out")}
        )
        assert samples[(f"{p}_records_total", out)] >= 1
    finally:
        for gateway in stack.gateways:
            if gateway.proc is not None and gateway.proc.poll() is None:
                gateway.stop()
        conv.close()
        lookalike.stop()
        for pid in browsers_on(stack.profile):
            os.kill(pid, signal.SIGKILL)
