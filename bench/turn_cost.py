"""What a turn costs the worker: its Kafka records, where its CPU goes, and the floor.

Used by ``bench.slow_llm`` (and ``bench.instant_llm`` for the floor):

- :func:`record_counts` reads a worker's ``/metrics`` at the end of a run: the records each
  agent took in and sent (``<prefix>_records_total{topic,agent,direction}``, ours) and every
  record the app's producer sent per topic, changelogs included (Faust's
  ``<prefix>_topic_messages_sent{topic}``), divided by the turns: the per-turn record table.
- :class:`Sampler` runs py-spy (``py-spy record --gil --nonblocking``: samples only the
  thread holding the GIL, i.e. Python CPU, without stopping the process) on the worker over
  the measured phase; :func:`cpu_shares` sorts the samples by who spent them (an agent, the
  LLM client, Faust's stream and producer plumbing, aiokafka, the event loop...).
- :func:`floor` is the least CPU a turn can cost in one Python process, measured in the
  benchmark's own process on the worker's event loop: the pipeline's ``LLMClient`` (openai
  ``AsyncOpenAI``) calling the stand-in, plus the raw aiokafka cost of the records a turn
  cannot do without: the inbound message consumed, and the reply, its ``llm.calls`` record
  and the window's changelog record produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import (
    chat_id,
    cpu_seconds,
    create_topics,
    produce_all,
    round_robin_turns,
    say,
    topic_size,
)
from pipeline.config.settings import Settings
from pipeline.llm.client import LLMClient

#: Records a turn cannot do without: (topic role, consumed or produced).
UNAVOIDABLE = (
    ("wa.inbound", "consumed"),
    ("wa.outbound", "produced"),
    ("llm.calls", "produced"),
    ("windows changelog", "produced"),
)

_SAMPLE = re.compile(r"^(\w+?)_(records_total|topic_messages_sent_total)\{([^}]*)\} ([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def record_counts(port: int, prefix: str, keep: Path | None = None) -> dict[str, Any]:
    """The records a worker (web server on ``port``) handled so far, from its /metrics.

    Returns ``{"agents": {agent: {"in": {topic: n}, "out": {topic: n}}}, "producer":
    {topic: n}}``; topic names lose the run's ``prefix``; the page is saved to ``keep``.
    Raises OSError (URLError) when the worker does not answer."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    if keep is not None:
        keep.write_text(text)
    agents: dict[str, dict[str, dict[str, float]]] = {}
    producer: dict[str, float] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        labels = dict(_LABEL.findall(found.group(3)))
        topic = _short(labels.get("topic", "?"), prefix)
        value = float(found.group(4))
        if not value:
            continue
        if found.group(2) == "records_total":
            agent = agents.setdefault(labels.get("agent", "?"), {"in": {}, "out": {}})
            way = agent[labels.get("direction", "in")]
            way[topic] = way.get(topic, 0.0) + value
        else:
            producer[topic] = producer.get(topic, 0.0) + value
    return {"agents": agents, "producer": producer}


def _short(topic: str, prefix: str) -> str:
    topic = topic.removeprefix("topic.")  # Faust's label
    return topic.replace(prefix, "") if prefix else topic


def record_lines(table: dict[str, Any]) -> list[str]:
    """The record table as result lines."""
    lines = ["  records per turn (worker /metrics):"]
    for agent, d in table.get("agents", {}).items():
        ins = ", ".join(f"{t} {n:g}" for t, n in d["in"].items()) or "-"
        outs = ", ".join(f"{t} {n:g}" for t, n in d["out"].items()) or "-"
        lines.append(f"    {agent}: in {ins}; out {outs}")
    produced = table.get("producer", {})
    total = sum(produced.values())
    lines.append(
        f"    the app's producer, changelogs included ({total:.2f} a turn): "
        + ", ".join(f"{t} {n:g}" for t, n in produced.items())
    )
    return lines


class Sampler:
    """py-spy on one process over a phase: ``start()``, ``stop()``, then :func:`cpu_shares`.

    Needs the ``py-spy`` binary (``pip install py-spy``, in the test extra) and the right
    to trace the process (root, or ptrace_scope 0); without either, ``start`` says why and
    the run goes on without shares."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            say("py-spy not found: no CPU shares (pip install py-spy)")
            return
        argv = [spy, "record", "-p", str(self.pid), "--gil", "--nonblocking"]
        argv += ["-r", str(self.rate), "-f", "raw", "-o", str(self.out)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(0.5)
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            say(f"py-spy could not start: {self.proc.stderr.read().decode().strip()[:200]}")
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


#: Who spent a sample: the first rule whose text is in the sample's stack wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "archive (agents/archive.py, SQLAlchemy, aiosqlite)",
        ("agents/archive.py", "pipeline/store/", "sqlalchemy", "aiosqlite"),
    ),
    ("LLM client (openai, httpx, aiohttp)", ("LLMClient.complete", "pipeline/llm/client.py")),
    ("guard agent", ("agents/guard/",)),
    ("respond agent (without the LLM call)", ("agents/respond.py", "agents/intake.py")),
    ("apply_reply agent", ("agents/apply_reply.py",)),
    ("analytics agent", ("agents/analytics.py",)),
    (
        "metrics (prometheus_client, Faust's monitor)",
        (
            "prometheus_client",
            "pipeline/observability/faust_metrics.py",
            "pipeline_metrics.py",
            "faust/sensors/",
        ),
    ),
    (
        "Faust producer buffer and aiokafka producer",
        ("faust/transport/producer.py", "aiokafka/producer/"),
    ),
    (
        "Faust consumer: fetch, drain, streams",
        ("faust/transport/consumer.py", "faust/transport/conductor.py", "faust/streams.py"),
    ),
    ("aiokafka fetcher and protocol", ("aiokafka/",)),
    ("Faust and mode, other", ("faust/", "mode/")),
    ("event loop (uvloop/asyncio)", ("asyncio/", "uvloop", "mode/worker.py")),
)


def cpu_shares(raw: Path) -> dict[str, float]:
    """Percent of the samples in a py-spy raw (collapsed stacks) file per category."""
    counts: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(FileNotFoundError), open(raw) as lines:
        for line in lines:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            total += int(n)
            name = next((c for c, keys in CATEGORIES if any(k in stack for k in keys)), "other")
            counts[name] += int(n)
    return {name: round(100 * n / total, 1) for name, n in counts.most_common()} if total else {}


def share_lines(shares: dict[str, float], cpu_ms_per_turn: float | None) -> list[str]:
    if not shares:
        return []
    lines = ["  worker CPU by who spent it (py-spy, GIL holder):"]
    for name, pct in shares.items():
        ms = f" = {cpu_ms_per_turn * pct / 100:.2f} ms a turn" if cpu_ms_per_turn else ""
        lines.append(f"    {pct:5.1f}% {name}{ms}")
    return lines


# -- the floor -------------------------------------------------------------------------


def event_loop() -> str:
    """The event loop the workers of this run use: WABOT_EVENT_LOOP (default uvloop), or
    FAUST_LOOP when set (``aio`` is asyncio's)."""
    forced = os.environ.get("FAUST_LOOP")
    if forced:
        return "uvloop" if forced == "uvloop" else "asyncio"
    return Settings().event_loop


def run_on_worker_loop(coroutine: Coroutine[Any, Any, Any], loop: str) -> Any:
    """Run ``coroutine`` on the event loop the workers use (WABOT_EVENT_LOOP)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


async def client_floor(base_url: str, calls: int, in_flight: int = 64) -> dict[str, Any]:
    """CPU of this process per call of the pipeline's LLMClient (``in_flight`` at a time, a
    21-message prompt) against the stand-in at ``base_url``: the floor of an LLM call."""
    client = LLMClient(
        [base_url],
        api_key="",
        model="bench",
        timeout_s=30,
        max_tokens=200,
        temperature=0.7,
        retries=0,
        backoff_s=0.1,
        backoff_max_s=1,
        fallback_reply="fallback",
    )
    window = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"message {n} of the window"}
        for n in range(20)
    ]
    messages = [{"role": "system", "content": "You are a helpful assistant."}, *window]
    gate = asyncio.Semaphore(in_flight)
    statuses: list[str] = []

    async def one(n: int) -> None:
        async with gate:
            completion = await client.complete(
                messages, turn_id=f"t{n}", chat_id=chat_id(n), trace_id=f"c{n}"
            )
            statuses.append(completion.status)

    say(f"floor: {calls} calls of the pipeline's LLM client, {in_flight} at a time")
    try:
        await asyncio.gather(*(one(n) for n in range(min(calls, 100))))  # warm the pool
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(calls)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.close()
    ms = cpu * 1000 / calls
    return {
        "calls": calls,
        "ok": statuses.count("ok"),
        "cpu_ms_per_call": round(ms, 3),
        "max_calls_per_s_per_process": round(1000 / ms) if ms > 0 else None,
        "calls_per_s": round(calls / wall, 1),
        "complete": statuses.count("ok") == calls,
    }


async def kafka_floor(bootstrap: str, run: str, turns: int, partitions: int) -> dict[str, Any]:
    """CPU of this process per turn for the records a turn cannot avoid, with plain aiokafka:
    consume ``turns`` inbound records (about 500 bytes) and, for each, produce a reply
    (~400 bytes), an llm.calls record (~600 bytes) and a window changelog record (~3 KiB,
    a 20-entry window), one send at a time with linger 0 as the worker's producer."""
    source, sink = f"b{run}.floor.in", f"b{run}.floor.out"
    await create_topics(bootstrap, [source, sink], partitions)
    records = round_robin_turns(run + "f", 1000, turns)
    await produce_all(bootstrap, source, records)
    outputs = (b"r" * 400, b"c" * 600, b"w" * 3000)
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=-1)
    await consumer.start()
    await producer.start()
    count = 0
    try:
        cpu = time.process_time()
        deadline = time.monotonic() + 120
        while count < turns and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for partition_records in batch.values():
                for record in partition_records:
                    for value in outputs:
                        await producer.send(sink, value=value, key=record.key)
                    count += 1
        await producer.flush()
        cpu = time.process_time() - cpu
    finally:
        await producer.stop()
        await consumer.stop()
    return {
        "turns": count,
        "records_per_turn": len(UNAVOIDABLE),
        "cpu_ms_per_turn": round(cpu * 1000 / max(count, 1), 3),
        "complete": count == turns,
    }


async def faust_plumbing(bootstrap: str, run: str, worker: Any, turns: int) -> dict[str, Any]:
    """CPU of the Faust worker ``worker`` (bench/naive_app.py in ``plumbing`` mode on topics
    ``b<run>.naive.*``) per turn for the unavoidable records, one turn at a time as a Faust
    agent takes them: ``turns`` inbound records consumed, each giving a table put (its
    changelog record), a reply and an llm.calls record. 500 turns first warm it up."""
    source, outputs = f"b{run}.naive.in", (f"b{run}.naive.out", f"b{run}.naive.calls")

    async def through(count: int, timeout: float = 300) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sizes = [await topic_size(bootstrap, topic) for topic in outputs]
            if min(sizes) >= count:
                return True
            await asyncio.sleep(0.25)
        return False

    pid = worker.proc.pid
    await produce_all(bootstrap, source, round_robin_turns(run + "w", 1000, 500))
    await through(500)
    say(f"floor: {turns} turns' unavoidable records through one Faust agent")
    cpu = cpu_seconds(pid)
    await produce_all(bootstrap, source, round_robin_turns(run, 1000, turns))
    complete = await through(500 + turns)
    used = cpu_seconds(pid) - cpu
    return {
        "turns": turns,
        "cpu_ms_per_turn": round(used * 1000 / turns, 3),
        "complete": complete,
    }


def floor(
    bootstrap: str,
    base_url: str,
    run: str,
    loop: str,
    *,
    calls: int,
    in_flight: int,
    turns: int,
    partitions: int,
) -> dict[str, Any]:
    """The floor per turn: LLM client CPU per call (``in_flight`` at a time, as the worker's
    cap) + raw aiokafka CPU of the unavoidable records, both measured here on ``loop``; ms."""
    client = run_on_worker_loop(client_floor(base_url, calls, in_flight), loop)
    say(f"floor: {turns} turns' unavoidable records through plain aiokafka")
    kafka = run_on_worker_loop(kafka_floor(bootstrap, run, turns, partitions), loop)
    return {
        "event_loop": loop,
        "llm_client": client,
        "kafka": kafka,
        "cpu_ms_per_turn": round(client["cpu_ms_per_call"] + kafka["cpu_ms_per_turn"], 3),
    }


def floor_lines(result: dict[str, Any], worker_ms: float | None) -> list[str]:
    """The floor, and the Faust floor when measured, against the worker's CPU a turn."""
    ms = result["cpu_ms_per_turn"]
    client = result["llm_client"]["cpu_ms_per_call"]
    ratio = f"; the worker's {worker_ms} ms is {worker_ms / ms:.2f}x the floor" if worker_ms else ""
    lines = [
        f"  floor ({result['event_loop']}): {ms} ms CPU a turn = LLM client "
        f"{client} ms a call + plain aiokafka "
        f"{result['kafka']['cpu_ms_per_turn']} ms for the {len(UNAVOIDABLE)} unavoidable "
        f"records (inbound consumed; reply, llm.calls, window changelog produced){ratio}"
    ]
    faust = result.get("faust")
    if faust:
        total = round(client + faust["cpu_ms_per_turn"], 3)
        lines.append(
            f"  Faust floor: {total} ms CPU a turn = LLM client {client} ms + the same records "
            f"through one Faust agent {faust['cpu_ms_per_turn']} ms "
            f"({'complete' if faust['complete'] else 'INCOMPLETE'}); {total / ms:.2f}x the floor"
            + (f"; the worker is {worker_ms / total:.2f}x it" if worker_ms else "")
        )
    return lines
