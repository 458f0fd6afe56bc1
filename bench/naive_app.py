"""The naive baseline: one plain Faust agent that answers one message at a time.

For each InboundMessage on its input topic it calls the LLM (openai.AsyncOpenAI, the same
client the pipeline uses), waits for the answer and produces a reply; then the next record.
No context window, no guard, no tables: only the cost of "a Faust agent awaits the LLM".

With ``BENCH_NAIVE_MODE=plumbing`` it is the **Faust floor** instead (bench/turn_cost.py):
no LLM call, only the records a turn cannot do without, through Faust as the pipeline's
agents handle records: for each inbound record (consumed), a ~3 KiB window put into a table
(its changelog record), a ~400-byte reply and a ~600-byte llm.calls record produced (the
latter to ``BENCH_NAIVE_CALLS``).

Run by bench/slow_llm.py as ``faust -A bench.naive_app worker -l warn`` with PYTHONPATH at the repo
root and these variables:

    WABOT_BROKER_URL           kafka://host:port
    WABOT_WEB_PORT             port of /health
    BENCH_NAIVE_APP_ID         Faust app id (consumer group)
    BENCH_NAIVE_IN             input topic (InboundMessage JSON)
    BENCH_NAIVE_OUT            output topic (JSON shaped like an OutboundMessage)
    BENCH_NAIVE_LLM_BASE_URL   OpenAI-compatible base URL
    BENCH_NAIVE_PARTITIONS     partitions of the topics (default 8)
    BENCH_NAIVE_MODE           llm (default) or plumbing
    BENCH_NAIVE_CALLS          plumbing: the llm.calls stand-in topic (default naive.calls)
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import faust
import openai

STARTED = time.monotonic()
SYSTEM = "You are a friendly, concise assistant answering WhatsApp messages for a small business."


class NaiveApp(faust.App):
    ready_after: float | None = None

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        if self.ready_after is None and not self.rebalancing:
            self.ready_after = time.monotonic() - STARTED


partitions = int(os.environ.get("BENCH_NAIVE_PARTITIONS", "8"))
app = NaiveApp(
    os.environ.get("BENCH_NAIVE_APP_ID", "bench-naive"),
    broker=os.environ.get("WABOT_BROKER_URL", "kafka://127.0.0.1:9092"),
    store="memory://",
    autodiscover=False,
    topic_partitions=partitions,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    broker_rebalance_timeout=6.0,
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    web_port=int(os.environ.get("WABOT_WEB_PORT", "6067")),
    datadir=os.environ.get("BENCH_NAIVE_DATA_DIR", "/tmp/bench-naive-data"),
)

inbound = app.topic(
    os.environ.get("BENCH_NAIVE_IN", "naive.in"),
    key_serializer="raw",
    value_serializer="raw",
    partitions=partitions,
)
outbound = app.topic(
    os.environ.get("BENCH_NAIVE_OUT", "naive.out"),
    key_serializer="raw",
    value_serializer="raw",
    partitions=partitions,
)


calls = app.topic(
    os.environ.get("BENCH_NAIVE_CALLS", "naive.calls"),
    key_serializer="raw",
    value_serializer="raw",
    partitions=partitions,
)
windows = app.Table("naive-windows", default=None, partitions=partitions, key_type=bytes)
PLUMBING = os.environ.get("BENCH_NAIVE_MODE", "llm") == "plumbing"
# The window as the pipeline's windows table keeps it: one JSON string value.
WINDOW, REPLY, CALL = "w" * 3000, b"r" * 400, b"c" * 600


async def plumbing(stream: Any) -> None:
    """The unavoidable records of a turn through Faust, one turn at a time (no LLM)."""
    async for key, _value in stream.items():
        windows[key] = WINDOW
        await outbound.send(key=key, value=REPLY)
        await calls.send(key=key, value=CALL)


@app.agent(inbound, name="naive")
async def naive(stream: Any) -> None:
    if PLUMBING:
        await plumbing(stream)
        return
    client = openai.AsyncOpenAI(
        base_url=os.environ["BENCH_NAIVE_LLM_BASE_URL"], api_key="not-needed", max_retries=0
    )
    async for key, value in stream.items():
        message = json.loads(value)
        response = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": message["body"]},
            ],
            max_tokens=512,
        )
        text = (response.choices[0].message.content or "").strip()
        reply = {
            "outbound_id": f"{message['message_id']}-0",
            "chat_id": message["chat_id"],
            "account_id": message["account_id"],
            "text": text,
            "kind": "reply",
        }
        await outbound.send(key=key, value=json.dumps(reply).encode())


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    ready = app.ready_after is not None and not app.rebalancing
    body = {"ready": ready, "ready_after_s": app.ready_after}
    return web.json(body, status=200 if ready else 503)
