"""The pipeline's own cost: one worker with an instant LLM (stand-in latency 0).

(a) Throughput: ``--turns`` messages over ``--chats`` chats, all produced up front; turns per
    second from the first produce to the last outbound reply. Bodies are ``"<chat> <k>"``, so
    order and completeness are checked as in slow_llm.py.
(b) Latency: messages at a steady ``--rate`` per second for ``--seconds`` (paced by the wall
    clock, each message to the next of ``--chats`` fresh chats); each body carries its send
    time, which the stand-in echoes back, so each reply gives produce-to-outbound latency.
(c) Ceiling: a raw aiokafka loop in this process (consume a topic of pre-produced records,
    produce each to another topic) on the same broker: what Kafka and one Python event loop
    manage with no Faust, no tables and no LLM.
(d) LLM client floor: the pipeline's own LLM client (``pipeline.llm.client.LLMClient``: the openai
    AsyncOpenAI client over aiohttp, plus the LLMCall record it builds) calling the stand-in
    ``--client-calls`` times, 64 at a time, with a prompt of 20 window messages: CPU per call
    in this process, i.e. the most calls a second one process can make with nothing else to do.

    .venv/bin/python -m bench.instant_llm --chats 1000 --turns 20000 --rate 200 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.common import (
    Bench,
    Collector,
    CpuMeter,
    add_common_args,
    chat_id,
    check_replies,
    correctness_lines,
    cpu_line,
    create_topics,
    emit,
    expected_per_chat,
    fast_producer,
    inbound_value,
    is_correct,
    log_problems,
    machine,
    merged_problems,
    problems_lines,
    produce_all,
    rates,
    round_robin_turns,
    rss_kib,
    run_main,
    say,
    topic_size,
)
from bench.turn_cost import client_floor, event_loop, run_on_worker_loop

PLACEHOLDER = "@@T0@@"
LATENCY_CHATS = 10_000_000  # chat ids of (b) start here, apart from those of (a)
WARMUP_CHATS = 20_000_000


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


async def throughput(
    bench: Bench, args: argparse.Namespace, out: Collector, meter: CpuMeter
) -> dict[str, Any]:
    records = round_robin_turns(bench.run, args.chats, args.turns)
    expected = expected_per_chat(args.chats, args.turns)
    say(f"(a) producing {len(records)} turns over {args.chats} chats")
    meter.start()
    produced = await produce_all(bench.bootstrap, bench.topics["inbound"], records)
    say(f"(a) produced in {produced.flushed - produced.started:.2f}s ({produced.rate:.0f}/s)")
    complete = await out.wait_for(len(records), args.stall_timeout, 0)
    cpu = meter.stop(len(records))
    await asyncio.sleep(args.settle)
    replies = list(out.replies)
    return {
        "complete": complete,
        "produce_s": round(produced.flushed - produced.started, 3),
        **rates(replies, produced.started),
        "duplicates": out.duplicates,
        "duplicate_examples": list(out.duplicate_ids),
        "check": check_replies(replies, expected),
        "cpu": cpu,
    }


async def latency(
    bench: Bench, args: argparse.Namespace, out: Collector, meter: CpuMeter
) -> dict[str, Any]:
    before = len(out.replies)
    duplicates_before = out.duplicates
    total = int(args.rate * args.seconds)
    warmup = int(args.rate * args.warmup)
    # Pre-serialized; only the send time is filled in when the message goes out.
    values = [
        inbound_value(
            chat_id(WARMUP_CHATS + n % args.chats), f"warmup {n}", f"3EB0{bench.run}W{n:010d}"
        )
        for n in range(warmup)
    ] + [
        inbound_value(
            chat_id(LATENCY_CHATS + n % args.chats), PLACEHOLDER, f"3EB0{bench.run}L{n:010d}"
        )
        for n in range(total)
    ]
    keys = [chat_id(WARMUP_CHATS + n % args.chats).encode() for n in range(warmup)] + [
        chat_id(LATENCY_CHATS + n % args.chats).encode() for n in range(total)
    ]
    placeholder = PLACEHOLDER.encode()
    # A gateway sends each message as it comes: no linger.
    producer = fast_producer(bench.bootstrap, linger_ms=0)
    await producer.start()
    say(f"(b) {args.warmup:g}s warm-up, then {total} messages at {args.rate:g}/s")
    behind = 0.0
    try:
        start = time.perf_counter()
        meter.start()
        for n, (key, value) in enumerate(zip(keys, values, strict=True)):
            target = start + n / args.rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            if n >= warmup:
                value = value.replace(placeholder, f"t0={time.perf_counter():.6f}".encode())
            await producer.send(bench.topics["inbound"], value=value, key=key)
        sent_at = time.perf_counter()
        await producer.flush()
    finally:
        await producer.stop()
    measured_for = sent_at - start - args.warmup
    complete = await out.wait_for(before + warmup + total, args.stall_timeout, 0)
    cpu = meter.stop(warmup + total)
    await asyncio.sleep(args.settle)
    latencies = []
    last_reply = start
    for reply in out.replies[before:]:
        if reply.body is not None and reply.body.startswith("t0="):
            latencies.append((reply.at - float(reply.body[3:])) * 1000)
            last_reply = max(last_reply, reply.at)
    latencies.sort()
    # Answered per second from the first measured send to the last reply: below the
    # offered rate means the worker did not keep up and the latencies are queueing time.
    answered_for = last_reply - (start + args.warmup)
    answer_rate = len(latencies) / answered_for if answered_for > 0 else 0.0
    figures: dict[str, Any] = {
        "complete": complete,
        "sent": total,
        "answered": len(latencies),
        "missing": total - len(latencies),
        "duplicates": out.duplicates - duplicates_before,
        "send_rate_per_s": round(total / measured_for, 1) if measured_for > 0 else None,
        "answer_rate_per_s": round(answer_rate, 1),
        "kept_up": answer_rate >= 0.95 * args.rate,
        "sender_max_behind_ms": round(behind * 1000, 1),
        "cpu": cpu,
    }
    if latencies:
        figures.update(
            {
                "p50_ms": round(percentile(latencies, 0.50), 1),
                "p95_ms": round(percentile(latencies, 0.95), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "max_ms": round(latencies[-1], 1),
                "min_ms": round(latencies[0], 1),
            }
        )
    return figures


async def ceiling(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    source, sink = f"b{bench.run}.ceiling.in", f"b{bench.run}.ceiling.out"
    await create_topics(bench.bootstrap, [source, sink], args.partitions)
    records = round_robin_turns(bench.run + "c", args.chats, args.ceiling_records)
    await produce_all(bench.bootstrap, source, records)
    size = len(records[0][1])
    say(f"(c) {len(records)} records of ~{size} bytes pre-produced; consume -> produce")
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bench.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    producer = fast_producer(bench.bootstrap)
    await consumer.start()
    await producer.start()
    count = 0
    first: float | None = None
    try:
        last_progress = time.monotonic()
        while count < len(records):
            batch = await consumer.getmany(timeout_ms=500, max_records=10000)
            if not batch:
                if time.monotonic() - last_progress > args.stall_timeout:
                    break
                continue
            if first is None:
                first = time.perf_counter()
            last_progress = time.monotonic()
            for partition_records in batch.values():
                for record in partition_records:
                    await producer.send(sink, value=record.value, key=record.key)
                    count += 1
        await producer.flush()
        end = time.perf_counter()
    finally:
        await producer.stop()
        await consumer.stop()
    elapsed = end - first if first is not None else 0.0
    return {
        "records": count,
        "record_bytes": size,
        "seconds": round(elapsed, 3),
        "records_per_s": round(count / elapsed, 1) if elapsed > 0 else None,
        "complete": count == len(records),
    }


async def hop_latencies(bench: Bench, marker: str) -> dict[str, Any]:
    """Where the latency goes, from the records' own timestamps (set by each producer): per
    measured turn (message ids containing ``marker``), ms from the inbound record to its turn
    (guard), from the turn to its LLM result (respond, with the LLM call), and from the
    result to the reply (apply_reply); then from the reply's timestamp to the moment the
    benchmark consumed it is what is left of the end-to-end figure."""
    app = f"bench-{bench.name}-{bench.run}-"
    topics = {
        "inbound": bench.topics["inbound"],
        "turns": app + bench.topics["turns"],
        "results": app + bench.topics["llm_results"],
        "outbound": bench.topics["outbound"],
    }
    stamps: dict[str, dict[str, int]] = {}
    first_message: dict[str, str] = {}  # turn id -> its first message id
    for role, topic in topics.items():
        stamps[role] = {}
        for record in await read_topic(bench.bootstrap, topic):
            value = json.loads(record.value)
            if role == "inbound":
                key = value.get("message_id", "")
            elif role == "turns":
                key = value["turn_id"]
                first_message[key] = value["message_ids"][0]
            elif role == "results":
                key = value["turn"]["turn_id"]
            else:
                key = value.get("turn_id") or ""
                if value.get("part", 0) != 0:
                    continue
            stamps[role][key] = record.timestamp
    hops: dict[str, list[float]] = {"guard": [], "respond": [], "apply_reply": []}
    for turn, at in stamps["turns"].items():
        message = first_message[turn]
        if marker not in message:
            continue
        result, reply = stamps["results"].get(turn), stamps["outbound"].get(turn)
        if message in stamps["inbound"]:
            hops["guard"].append(at - stamps["inbound"][message])
        if result is not None:
            hops["respond"].append(result - at)
            if reply is not None:
                hops["apply_reply"].append(reply - result)
    summary: dict[str, Any] = {}
    for hop, values in hops.items():
        values.sort()
        if values:
            summary[hop] = {
                "p50_ms": percentile(values, 0.50),
                "p99_ms": percentile(values, 0.99),
                "max_ms": values[-1],
            }
    return summary


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` now (stops after 2 s without a new one)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=2000, max_records=10000):
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def pipeline_phases(
    bench: Bench, args: argparse.Namespace, pids: dict[str, int]
) -> dict[str, Any]:
    out = Collector(bench.bootstrap, bench.topics["outbound"])
    await out.start()
    try:
        a = await throughput(bench, args, out, CpuMeter(pids)) if args.turns > 0 else {}
        b = await latency(bench, args, out, CpuMeter(pids)) if args.seconds > 0 else {}
        if b:
            b["hops"] = await hop_latencies(bench, f"{bench.run}L")
    finally:
        await out.stop()
    dlq = await topic_size(bench.bootstrap, bench.topics["dlq"])
    return {"throughput": a, "latency": b, "dead_letters": dlq}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instant_llm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=20000, help="(a): 0 skips it")
    parser.add_argument("--rate", type=float, default=200.0, help="(b): messages per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="(b): 0 skips it")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="(b): seconds at --rate not measured"
    )
    parser.add_argument(
        "--ceiling-records", type=int, default=None, help="(c): default --turns; 0 skips it"
    )
    parser.add_argument(
        "--client-calls", type=int, default=2000, help="(d): LLM client calls; 0 skips it"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=256, help="WABOT_RESPOND_MAX_IN_FLIGHT"
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.ceiling_records is None:
        args.ceiling_records = args.turns or 20000

    with Bench(args, "instant") as bench:
        bench.start_broker()
        base_url = bench.start_standin(0.0)
        workers = bench.start_workers(
            bench.pipeline_env(base_url, WABOT_RESPOND_MAX_IN_FLIGHT=str(args.max_in_flight)),
            args.workers,
        )
        results = asyncio.run(pipeline_phases(bench, args, bench.cpu_pids(*workers)))
        rss = [rss_kib(w.proc.pid) for w in workers if w.proc is not None]
        results["worker_rss_kib"] = rss[0] if len(rss) == 1 else rss
        results["worker_log"] = merged_problems([log_problems(w.log) for w in workers])
        for worker in workers:  # the raw loop gets the machine to itself
            bench.stop_worker(worker)
        results["ceiling"] = asyncio.run(ceiling(bench, args)) if args.ceiling_records else {}
        results["client_floor"] = (
            run_on_worker_loop(client_floor(base_url, args.client_calls), event_loop())
            if args.client_calls
            else {}
        )

    a, b, c = results["throughput"], results["latency"], results["ceiling"]
    rss = results["worker_rss_kib"]
    d = results["client_floor"]
    lines = [
        f"instant LLM (stand-in latency 0), {args.workers} worker(s), {args.partitions} partitions"
    ]
    if a:
        lines += [
            f"(a) throughput: {a.get('per_s_from_produce')} turns/s end to end "
            f"(first produce to last outbound; {args.turns} turns over {args.chats} chats, "
            f"{a.get('last_reply_after_s')}s); {a.get('per_s_first_to_last')}/s first to last "
            f"reply; producing alone took {a['produce_s']}s",
            *correctness_lines(a["check"], a["duplicates"], results["dead_letters"]),
            cpu_line(a["cpu"]),
        ]
    if b:
        lines.append(
            f"(b) latency at {args.rate:g} msg/s for {args.seconds:g}s "
            f"(achieved {b['send_rate_per_s']}/s, {b['answered']}/{b['sent']} answered, "
            f"missing {b['missing']}, duplicates {b['duplicates']}): "
            f"p50 {b.get('p50_ms')} ms, p95 {b.get('p95_ms')} ms, p99 {b.get('p99_ms')} ms, "
            f"max {b.get('max_ms')} ms"
        )
        lines.append(
            f"    answered {b['answer_rate_per_s']}/s: "
            + (
                "the worker kept up"
                if b["kept_up"]
                else "the worker did NOT keep up with the offered rate; these latencies are "
                "mostly queueing (use a --rate below the throughput of (a))"
            )
        )
        lines.append(cpu_line(b["cpu"]))
        if b.get("hops"):
            lines.append(
                "    per hop, from the records' timestamps (ms): "
                + "; ".join(
                    f"{hop} p50 {h['p50_ms']:g}, p99 {h['p99_ms']:g}"
                    for hop, h in b["hops"].items()
                )
            )
    if c:
        lines.append(
            f"(c) ceiling, raw aiokafka consume->produce in one process: "
            f"{c['records_per_s']} records/s ({c['records']} records of ~{c['record_bytes']} B)"
        )
    if d:
        lines.append(
            f"(d) LLM client floor: {d['cpu_ms_per_call']} ms CPU per call "
            f"({d['ok']}/{d['calls']} ok), so at most {d['max_calls_per_s_per_process']} "
            "LLM calls/s in one process doing nothing else"
        )
    lines += [
        "  worker RSS at the end: "
        + ", ".join(
            f"{r.get('VmRSS', 0) / 1024:.0f} MiB (peak {r.get('VmHWM', 0) / 1024:.0f} MiB)"
            for r in (rss if isinstance(rss, list) else [rss])
        ),
        *problems_lines("  worker", results["worker_log"]),
        f"  machine: broker, LLM stand-in, worker and this client share {machine()['cpus']} cores",
    ]
    figures = {
        "bench": "instant_llm",
        "workers": args.workers,
        "chats": args.chats,
        "turns": args.turns,
        "rate": args.rate,
        "seconds": args.seconds,
        "partitions": args.partitions,
        "turns_per_s": a.get("per_s_from_produce"),
        "latency_ms": {k: b.get(k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        "ceiling_records_per_s": c.get("records_per_s"),
        "llm_client_cpu_ms_per_call": d.get("cpu_ms_per_call"),
        **results,
        "topic_prefix": f"b{bench.run}.",
        "machine": machine(),
    }
    emit("bench/instant_llm.py", lines, figures)
    complete = all(part.get("complete", True) for part in (a, b, c, d))
    correct = not a or is_correct(a["check"], a["duplicates"], results["dead_letters"])
    correct = correct and not (b and (b["missing"] or b["duplicates"]))
    return 0 if complete and correct else 1


if __name__ == "__main__":
    run_main(main)
