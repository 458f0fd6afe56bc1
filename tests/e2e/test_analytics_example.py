"""examples/analytics end to end: a real conversation, then the example consumer as a subprocess.

The stack is the real one: Apache Kafka, a pipeline worker with the LLM stand-in, and a gateway
process driving the WhatsApp look-alike in Debian's Chromium, so ``wa.delivery`` holds the
gateway's own ``sent``/``delivered``/``failed`` receipts. The example then runs twice over the
run's topics (the second time from the beginning) and the numbers in its SQLite file are checked
against the records on the topics and the stand-in's own request count.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.lookalike import LookalikeConfig
from pipeline.dev.lookalike.server import ThreadedLookalike, run_in_thread
from pipeline.dev.standin.failures import Failure
from pipeline.gateway.page import browsers_on
from pipeline.testing.workers import WorkerProcess
from schemas import OutboundMessage
from tests.conftest import REPO, Broker
from tests.conversation import Conversation

pytestmark = [pytest.mark.e2e]

EXAMPLE = REPO / "examples" / "analytics" / "consumer.py"
ME = "10000@c.us"
ALICE = "4915111111111@c.us"
BOB = "4915222222222@c.us"
ACK_DELAY_S = 0.3  # the look-alike's delay from sent to delivered


class Stack:
    """A pipeline worker and a gateway process on the look-alike, sharing one Conversation."""

    def __init__(self, conv: Conversation, lookalike: ThreadedLookalike, tmp: Path) -> None:
        self.conv = conv
        self.lookalike = lookalike
        self.profile = tmp / "profile"
        env = {
            **conv.env,
            "WABOT_GATEWAY_NAME": "analytics",
            "WABOT_GATEWAY_URL": lookalike.base_url + "/",
            "WABOT_GATEWAY_PROFILE_DIR": str(self.profile),
            "WABOT_SEND_TYPING_MS_PER_CHAR": "5",
            "WABOT_SEND_TYPING_MAX_S": "0.2",
            "WABOT_SEND_MIN_GAP_CHAT_S": "0.1",
            "WABOT_SEND_MIN_GAP_ACCOUNT_S": "0.1",
        }
        self.gateway = WorkerProcess(env, tmp / "gateway.log", cwd=REPO, app="pipeline.gateway")

    def post(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call to the look-alike's control API (a customer writes, the phone scans...)."""
        request = urllib.request.Request(
            f"{self.lookalike.base_url}/control/{route}",
            data=json.dumps(body or {}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def bot_messages(self, chat: str) -> list[dict[str, Any]]:
        state = self.lookalike.state()
        return [m for m in state["messages"] if m["chat"] == chat and m["origin"] == "bot"]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.gateway.tail()}")

    def state(self) -> str | None:
        status = self.gateway.get_json("/gateway/status") or {}
        return status.get("state")  # type: ignore[return-value]


@pytest.fixture
def stack(kafka_broker: Broker, tmp_path: Path) -> Iterator[Stack]:
    lookalike = run_in_thread(LookalikeConfig(me=ME, ack_delay_s=ACK_DELAY_S))
    # One retry per turn: two scripted 500s turn one reply into the fallback reply.
    conv = Conversation(kafka_broker, tmp_path, WABOT_LLM_RETRIES="1")
    built = Stack(conv, lookalike, tmp_path)
    try:
        worker = conv.start_worker(wait=False)
        built.gateway.start()
        built.gateway.wait_ready()
        worker.wait_ready()
        yield built
    finally:
        if built.gateway.proc is not None and built.gateway.proc.poll() is None:
            built.gateway.stop()
        conv.close()
        lookalike.stop()
        for pid in browsers_on(built.profile):  # only browsers on this test's profile
            os.kill(pid, signal.SIGKILL)


def run_example(stack: Stack, db: Path, *extra: str) -> dict[str, int]:
    """Runs the example to idleness; returns the records it read per topic (from its log)."""
    topics = stack.conv.topics
    command = [
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        stack.conv.broker.bootstrap,
        "--topic-inbound",
        topics["inbound"],
        "--topic-delivery",
        topics["delivery"],
        "--topic-llm-calls",
        topics["llm_calls"],
        "--group-id",
        f"analytics-{topics['inbound']}",
        "--db",
        str(db),
        "--until-idle",
        "3",
        *extra,
    ]
    # Outside the repo and without PYTHONPATH, as an analytics engineer would run a copy.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        command, cwd=db.parent, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"read (\{.*\}) records \((\d+) invalid\)", done.stderr)
    assert found, done.stderr
    counts = ast.literal_eval(found.group(1))
    return {"invalid": int(found.group(2)), **counts}


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted; invalid_records without the time it was seen."""
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        rows = {t: sorted(conn.execute(f"select * from {t}").fetchall()) for t in tables}
        rows["invalid_records"] = sorted(
            conn.execute("select topic, partition, offset, error from invalid_records").fetchall()
        )
    return rows


def hourly(db: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        stats = [dict(r) for r in conn.execute("select * from hourly_stats order by hour")]
        llm = [dict(r) for r in conn.execute("select * from hourly_llm order by hour, model")]
    return stats, llm


def when(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def read_topics(
    conv: Conversation, stale: OutboundMessage
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Sends ``stale``, waits for its failed receipt and every delivered ack; returns the
    records of wa.delivery, wa.inbound and llm.calls; then adds two broken records."""
    producer = await conv.producer()
    topics = conv.topics
    await producer.send_and_wait(
        topics["outbound"], key=stale.chat_id.encode(), value=stale.model_dump_json().encode()
    )

    def settled(rs: list[dict[str, Any]]) -> bool:
        statuses = [r["status"] for r in rs]
        return statuses.count("delivered") >= 3 and "failed" in statuses

    receipts = await conv.collect("delivery", settled, timeout=30)
    assert settled(receipts), receipts

    def customers_and_echoes(rs: list[dict[str, Any]]) -> bool:
        return sum(not r["from_me"] for r in rs) >= 3 and sum(r["sent_by_bot"] for r in rs) >= 3

    inbound = await conv.collect("inbound", customers_and_echoes, timeout=15)
    calls = await conv.collect(
        "llm_calls", lambda rs: [r["status"] for r in rs].count("ok") >= 2, settle=0.5
    )
    # Records the example must count as invalid and skip (read only by the example).
    await producer.send_and_wait(topics["delivery"], key=b"x", value=b"{not json")
    await producer.send_and_wait(topics["llm_calls"], key=b"x", value=b'{"status": "ok"}')
    await conv.stop_clients()
    return receipts, inbound, calls


def test_example_imports_nothing_of_the_project() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    modules = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    third_party = modules - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"aiokafka", "sqlalchemy"}, modules


def test_hourly_numbers_of_a_real_conversation(stack: Stack, tmp_path: Path) -> None:
    conv = stack.conv
    stack.wait_for("the QR screen", lambda: stack.state() == "qr", timeout=60)
    stack.post("scan")
    stack.wait_for("the gateway ready", lambda: stack.state() == "ready", timeout=60)

    began = time.monotonic()
    stack.post("message", {"chat": ALICE, "body": "Hi! Are you open on Sunday?"})
    stack.wait_for("Alice's first reply", lambda: len(stack.bot_messages(ALICE)) == 1)
    # Bob's turn: both attempts fail (2 LLMCall "retry"), then the fallback reply is sent.
    conv.standin.set_failures([Failure("500", times=2)])
    stack.post("message", {"chat": BOB, "body": "Do you repair bikes?"})
    stack.wait_for("Bob's fallback reply", lambda: len(stack.bot_messages(BOB)) == 1)
    stack.post("message", {"chat": ALICE, "body": "And on Monday morning?"})
    stack.wait_for("Alice's second reply", lambda: len(stack.bot_messages(ALICE)) == 2)
    # A reply two hours old: the gateway reports it failed instead of sending it late.
    stale = OutboundMessage(
        outbound_id="manual-stale-1",
        chat_id=ALICE,
        account_id=ME,
        text="Yesterday's answer",
        kind="manual",
        created_at=datetime.now(UTC) - timedelta(hours=2),
    )

    receipts, inbound, calls = asyncio.run(read_topics(conv, stale))

    # --- what the topics say --------------------------------------------------------------------
    customer = {r["trace_id"]: r for r in inbound if not r["from_me"]}
    assert len(customer) == 3
    # The gateway also puts the bot's own sends on wa.inbound, with the reply's trace_id.
    assert sum(r["sent_by_bot"] for r in inbound) == 3
    out = {r["outbound_id"] for r in receipts if r["status"] in ("sent", "duplicate_skipped")}
    failed = {r["outbound_id"] for r in receipts if r["status"] == "failed"}
    assert len(out) == 3 and failed == {"manual-stale-1"}
    # What the customers' phones show: three replies, not the stale one.
    assert len(stack.bot_messages(ALICE)) == 2 and len(stack.bot_messages(BOB)) == 1
    latencies: dict[datetime, list[float]] = defaultdict(list)
    for trace, message in customer.items():
        answers = {r["outbound_id"] for r in receipts if r["trace_id"] == trace}
        delivered = [
            when(r["at"])
            for r in receipts
            if r["outbound_id"] in answers and r["status"] in ("delivered", "read")
        ]
        received = when(message["received_at"])
        ms = (min(delivered) - received) / timedelta(milliseconds=1)
        # Plausible: after the look-alike's delivered ack, within the conversation.
        assert ACK_DELAY_S * 1000 <= ms < (time.monotonic() - began) * 1000
        latencies[received.replace(minute=0, second=0, microsecond=0, tzinfo=None)].append(ms)
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for call in calls:
        model = by_model[call["model"]]
        model[call["status"]] += 1
        model["calls"] += call["status"] in ("ok", "retry", "error")
        for kind in ("prompt_tokens", "completion_tokens", "total_tokens"):
            model[kind] += call[kind]
    assert [c["status"] for c in calls].count("retry") == 2
    assert [c["status"] for c in calls].count("fallback") == 1
    # The stand-in counted every HTTP request, the failed ones too.
    assert sum(m["calls"] for m in by_model.values()) == conv.standin.stats.requests == 4

    # --- the example, first run -----------------------------------------------------------------
    db = tmp_path / "analytics.sqlite"
    first = run_example(stack, db)
    assert first["invalid"] == 2
    stats, llm = hourly(db)
    total = {k: sum(row[k] for row in stats) for k in stats[0] if k != "hour" and "_ms" not in k}
    assert total["messages_in"] == 3
    assert total["messages_out"] == 3
    assert total["replied"] == total["replied_delivered"] == 3
    assert total["delivery_failures"] == 1
    assert total["llm_fallbacks"] == 1 and total["llm_errors"] == 0
    assert total["failures"] == 2
    assert total["llm_calls"] == 4
    assert total["llm_total_tokens"] == sum(m["total_tokens"] for m in by_model.values()) > 0

    for row in stats:
        hour = datetime.fromisoformat(row["hour"])
        assert (hour.minute, hour.second, hour.microsecond) == (0, 0, 0)
        samples = latencies.get(hour, [])
        assert row["replied_delivered"] == len(samples)
        if not samples:
            assert row["latency_p50_ms"] is None and row["latency_p95_ms"] is None
            continue
        p95 = (
            statistics.quantiles(samples, n=20, method="inclusive")[18]
            if len(samples) > 1
            else samples[0]
        )
        assert row["latency_p50_ms"] == pytest.approx(statistics.median(samples), abs=0.01)
        assert row["latency_p95_ms"] == pytest.approx(p95, abs=0.01)
        assert ACK_DELAY_S * 1000 <= row["latency_p50_ms"] <= row["latency_p95_ms"]
        assert 0 < row["sent_latency_p50_ms"] < row["latency_p50_ms"]

    got: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in llm:
        for column in ("calls", "ok", "retries", "fallbacks", "total_tokens", "prompt_tokens"):
            got[row["model"]][column] += row[column]
    assert set(got) == set(by_model)
    for model, counts in by_model.items():
        assert got[model]["calls"] == counts["calls"]
        assert got[model]["ok"] == counts["ok"]
        assert got[model]["retries"] == counts["retry"]
        assert got[model]["fallbacks"] == counts["fallback"]
        assert got[model]["prompt_tokens"] == counts["prompt_tokens"]
        assert got[model]["total_tokens"] == counts["total_tokens"]

    # --- second run, from the beginning: everything re-read, nothing counted twice --------------
    before = dump(db)
    second = run_example(stack, db, "--from-beginning")
    assert second == first  # the same records again, the two invalid ones too
    assert dump(db) == before
