"""The pipeline's own metrics on a real worker (Apache Kafka): a conversation with a bad
record and a rate limit, then /metrics (with the token, the metrics closed) must show what
the topics show: records per topic and agent, dead letters by agent and error, LLM calls
and tokens by model, the limit decision, no turn in flight, and the store caught up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.observability.faust_metrics import metric_prefix
from tests.conftest import Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(conv: Conversation) -> Samples:
    """Every sample of the worker's /metrics (fetched with its token)."""
    text = conv.workers[0].get("/metrics").decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_metrics_show_what_the_topics_show(kafka_broker: Broker, tmp_path: Path) -> None:
    conv = Conversation(
        kafka_broker,
        tmp_path,
        WABOT_RATE_CHAT_PER_MINUTE="1",
        WABOT_METRICS_PUBLIC="false",
    )
    p = metric_prefix(conv.app_id)
    t = conv.topics
    first, second = "4917300000001@c.us", "4917300000002@c.us"
    try:
        conv.start_worker()

        async def run() -> dict[str, list[dict[str, Any]]]:
            await conv.send(inbound(first, "hello"), inbound(second, "hi"))
            await conv.collect("outbound", lambda r: len(r) >= 2)
            await conv.send(inbound(first, "again"))  # the chat's second turn this minute
            await conv.send_raw(first.encode(), b"this is not an inbound message")
            seen = {
                "decisions": await conv.collect(
                    "decisions", lambda r: any(d["reason"] == "rate_limited_chat" for d in r)
                ),
                # The guard and the archive both read wa.inbound: two dead letters.
                "dlq": await conv.collect("dlq", lambda r: len(r) >= 2, settle=1),
                "outbound": await conv.collect("outbound", lambda r: True, timeout=2, settle=1),
                "llm_calls": await conv.collect(
                    "llm_calls", lambda r: sum(c["status"] == "ok" for c in r) >= 2
                ),
            }
            await conv.stop_clients()
            return seen

        seen = asyncio.run(run())
        replies = [r for r in seen["outbound"] if r["kind"] == "reply"]
        assert len(replies) == 2
        assert all(r["received_at"] for r in replies)  # what the reply latency runs from
        ok_calls = [c for c in seen["llm_calls"] if c["status"] == "ok"]
        dead = Counter((d["agent"], d["error_type"]) for d in seen["dlq"])
        assert {agent for agent, _ in dead} == {"guard", "archive"}, dead

        def settled(samples: Samples) -> bool:
            lag = series(samples, f"{p}_store_lag_records")
            inbound_lag = [v for labels, v in lag.items() if ("topic", t["inbound"]) in labels]
            return (
                value(samples, f"{p}_turns_in_flight") == 0
                and len(inbound_lag) == 4  # WABOT_TOPIC_PARTITIONS
                and not any(lag.values())
                and value(samples, f"{p}_guard_decisions_total", reason="rate_limited_chat") == 1
            )

        deadline = time.monotonic() + 30
        samples = scrape(conv)
        while not settled(samples) and time.monotonic() < deadline:
            time.sleep(0.5)
            samples = scrape(conv)
        assert settled(samples), {k: v for k, v in samples.items() if k[0].startswith(p)}

        # Records in and out, per topic and agent.
        def records(topic: str, agent: str, direction: str) -> float | None:
            return value(
                samples, f"{p}_records_total", topic=t[topic], agent=agent, direction=direction
            )

        assert records("inbound", "guard", "in") == 4  # three messages and the bad record
        assert records("turns", "guard", "out") == 2
        assert records("turns", "respond", "in") == 2
        assert records("llm_results", "respond", "out") == 2
        assert records("llm_results", "apply_reply", "in") == 2
        assert records("outbound", "apply_reply", "out") == 2
        assert records("llm_calls", "apply_reply", "out") == len(seen["llm_calls"]) - sum(
            c["status"] == "skipped" for c in seen["llm_calls"]
        )
        assert records("decisions", "guard", "out") == len(seen["decisions"])
        assert records("dlq", "guard", "out") == 1

        # Dead letters by agent and kind of error: exactly what the DLQ holds.
        letters = series(samples, f"{p}_dead_letters_total")
        assert {
            (dict(labels)["agent"], dict(labels)["error_type"]): v for labels, v in letters.items()
        } == dead

        # LLM calls and tokens by model: one call per reply with the stand-in.
        models = Counter(c["model"] for c in ok_calls)
        for model, calls in models.items():
            assert value(samples, f"{p}_llm_call_seconds_count", model=model, status="ok") == calls
            assert (value(samples, f"{p}_llm_call_seconds_sum", model=model, status="ok") or 0) > 0
            for kind in ("prompt", "completion"):
                tokens = sum(c[f"{kind}_tokens"] for c in ok_calls if c["model"] == model)
                assert tokens > 0
                assert value(samples, f"{p}_llm_tokens_total", model=model, kind=kind) == tokens
        assert sum(models.values()) == len(replies)

        # No gateway in this worker: no sink sends, no gateway state.
        assert not series(samples, f"{p}_gateway_state")
        assert value(samples, f"{p}_sink_send_seconds_count", outcome="sent") == 0
        assert value(samples, f"{p}_reply_latency_seconds_count") == 0
    finally:
        conv.close()
