"""Resident memory of one worker holding many chats, each with a full context window.

``--chats`` chats each get ``--turns-per-chat`` turns (produced round-robin: turn k of every
chat, then turn k+1), answered by an instant LLM stand-in. With the default 10 turns a
chat's window holds 20 entries after its last reply (10 exchanges, WABOT_CONTEXT_TURNS=20).
RSS (VmRSS from /proc/<pid>/status) is read ``--settle-rss`` seconds after the worker is
ready (baseline) and after every reply arrived and ``--settle-rss`` seconds passed; the
difference divided by the chats is the memory per chat: its window plus everything else the
worker keeps per chat (guard state with the remembered message ids, chat state, rate
counters), in the table store.

``--stores`` (comma list, default ``memory://``; ``rocksdb://`` needs rocksdict) and
``--sizes`` (comma list of chat counts; overrides ``--chats``) make one case per store and
size, each with a fresh worker, its own app id, topics and data folder (WABOT_DATA_DIR).

Restart to ready: after the fill the worker is stopped (SIGTERM) and a new one starts with
the same environment (same app id and data folder: rocksdb:// keeps its files, memory://
recovers every table from its changelog). Reported: seconds from starting the process to
its /health saying ready (group joined, tables recovered), the worker's own figure, and its
RSS ``--settle-rss`` seconds after ready (and its peak, which covers the recovery). Then
``--probe-chats`` chats get one more turn each: its prompt must carry the full window
(recovered, not empty), and no other reply may come after the restart (nothing answered
twice).

Extrapolation: per store, RSS = a + b x chats fitted by least squares over the sizes (two
sizes at least), the RSS predicted at ``--extrapolate-to`` chats (default 100,000) and b in
KiB per chat; the same for the restarted worker's RSS and its time to ready.

Each reply echoes the prompt's message count, so the run also checks that windows filled up:
turn k of a chat must have been sent with 2 + min(2k, context turns) messages. The exit
status is 1 when any case misses a reply, answers one twice or out of order, has a wrong
prompt size, leaves a dead letter or fails the probe after the restart.

    .venv/bin/python -m bench.memory --chats 100000 --turns-per-chat 10
    .venv/bin/python -m bench.memory --sizes 1000,3000 --stores memory://,rocksdb://
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import (
    REPO,
    Bench,
    BenchWorker,
    Collector,
    CpuMeter,
    Reply,
    add_common_args,
    chat_id,
    check_replies,
    correctness_lines,
    cpu_line,
    emit,
    end_offsets,
    expected_per_chat,
    inbound_value,
    is_correct,
    log_problems,
    machine,
    parse_reply,
    problems_lines,
    produce_all,
    rates,
    round_robin_turns,
    rss_kib,
    run_main,
    say,
    topic_size,
)
from pipeline.config.settings import topic_keys
from pipeline.testing.workers import WorkerProcess

MIB = 1024  # KiB


@dataclass
class Case:
    """One store at one size: its own run id (app id, topic names, message ids) and data
    folder, so that cases share the broker and the stand-in but nothing else."""

    store: str
    chats: int
    run: str
    topics: dict[str, str]
    data_dir: Path

    @property
    def app_id(self) -> str:
        return f"bench-memory-{self.run}"

    @property
    def label(self) -> str:
        return f"{self.store} {self.chats} chats"


def new_case(bench: Bench, store: str, chats: int) -> Case:
    """A case with a fresh run id (topics ``b<run>.<name>``, as Bench names its own)."""
    run = uuid.uuid4().hex[:8]
    return Case(
        store=store,
        chats=chats,
        run=run,
        topics={name: f"b{run}.{name}" for name in topic_keys()},
        data_dir=bench.workdir / f"data-{run}",
    )


def case_env(bench: Bench, case: Case, base_url: str, args: argparse.Namespace) -> dict[str, str]:
    """The worker environment of a case; the restarted worker gets the same one."""
    return bench.pipeline_env(
        base_url,
        WABOT_APP_ID=case.app_id,
        WABOT_DATA_DIR=str(case.data_dir),
        WABOT_STORE=case.store,
        WABOT_CONTEXT_TURNS=str(args.context_turns),
        WABOT_RESPOND_MAX_IN_FLIGHT=str(args.max_in_flight),
        **{f"WABOT_TOPIC_{key.upper()}": topic for key, topic in case.topics.items()},
    )


def expected_prompt(k: int, context_turns: int) -> int:
    """Messages in the prompt of turn k of a chat: system, window, the turn itself."""
    return 2 + min(2 * k, context_turns)


def window_check(collector: Collector, context_turns: int) -> dict[str, Any]:
    """Replies whose prompt had the wrong number of messages for their turn number."""
    wrong: list[str] = []
    largest = 0
    for reply in collector.replies:
        if reply.body is None:
            continue
        k = int(reply.body.rpartition(" ")[2])
        expected = expected_prompt(k, context_turns)
        largest = max(largest, reply.prompt_messages)
        if reply.prompt_messages != expected:
            wrong.append(f"{reply.chat_id} k={k}: {reply.prompt_messages} != {expected}")
    return {"wrong_prompt_sizes": len(wrong), "examples": wrong[:5], "largest_prompt": largest}


async def fill(
    bench: Bench, case: Case, args: argparse.Namespace, meter: CpuMeter
) -> dict[str, Any]:
    """Produce every turn of the case and wait for the replies; checks and rates."""
    turns = case.chats * args.turns_per_chat
    say(f"building {turns} turns")
    records = round_robin_turns(case.run, case.chats, turns)
    expected = expected_per_chat(case.chats, turns)
    collector = Collector(bench.bootstrap, case.topics["outbound"])
    await collector.start()
    try:
        say(f"producing {turns} turns over {case.chats} chats")
        meter.start()
        produced = await produce_all(bench.bootstrap, case.topics["inbound"], records)
        del records
        say(f"produced in {produced.flushed - produced.started:.1f}s")
        complete = await collector.wait_for(turns, args.stall_timeout, 0)
        meter.stop(turns)
        await asyncio.sleep(args.settle)
    finally:
        await collector.stop()
    return {
        "complete": complete,
        **rates(collector.replies, produced.started),
        "duplicates": collector.duplicates,
        "check": check_replies(collector.replies, expected),
        "window": window_check(collector, args.context_turns),
        "dead_letters": await topic_size(bench.bootstrap, case.topics["dlq"]),
        "cpu": meter.result,
    }


def fill_ok(result: dict[str, Any]) -> bool:
    """Every turn answered once, in order, with the expected prompt size; no dead letter."""
    check = result["check"]
    return bool(
        result["complete"]
        and is_correct(check, result["duplicates"], result["dead_letters"])
        and result["window"]["wrong_prompt_sizes"] == 0
    )


# --- restart ----------------------------------------------------------------------------------


async def read_from(
    bootstrap: str, topic: str, start: dict[int, int], expected: int, args: argparse.Namespace
) -> list[Reply]:
    """Every record of ``topic`` past ``start``, until ``expected`` came (then ``--settle``
    seconds more, to catch extra ones) or none came for ``--stall-timeout`` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    replies: list[Reply] = []
    try:
        partitions = [TopicPartition(topic, p) for p in start]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp.partition])
        last_change = time.monotonic()
        done_at: float | None = None
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=10000)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    replies.append(parse_reply(time.perf_counter(), _json(record.value)))
                    last_change = now
            if done_at is None and len(replies) >= expected:
                done_at = now
            if done_at is not None and now - done_at >= args.settle:
                break
            if done_at is None and now - last_change > args.stall_timeout:
                say(f"no probe reply for {args.stall_timeout:.0f}s: {len(replies)}/{expected}")
                break
    finally:
        await consumer.stop()
    return replies


def _json(value: bytes | None) -> dict[str, Any]:
    """A record's JSON object; {} when it is not one."""
    try:
        loaded = json.loads(value or b"{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


async def probe(
    bench: Bench, case: Case, args: argparse.Namespace, start: dict[int, int]
) -> dict[str, Any]:
    """One more turn to each of ``--probe-chats`` chats after the restart: each must be
    answered once with the full window in its prompt, and nothing else may be answered."""
    chats = min(args.probe_chats, case.chats)
    k = args.turns_per_chat
    first_id = case.chats * args.turns_per_chat  # message ids go on after the fill's
    # Spread the probes over the chats (and so over the partitions).
    step = max(case.chats // max(chats, 1), 1)
    names = [chat_id(n * step) for n in range(chats)]
    records = [
        (name.encode(), inbound_value(name, f"{name} {k}", f"3EB0{case.run}{first_id + n:010d}"))
        for n, name in enumerate(names)
    ]
    if records:
        await produce_all(bench.bootstrap, case.topics["inbound"], records)
    replies = await read_from(bench.bootstrap, case.topics["outbound"], start, chats, args)
    wanted = expected_prompt(k, args.context_turns)
    answered: dict[str, int] = {}
    wrong: list[str] = []
    extra: list[str] = []
    for reply in replies:
        body = reply.body or ""
        chat, _, turn = body.rpartition(" ")
        if chat in names and turn == str(k) and reply.chat_id == chat:
            answered[chat] = answered.get(chat, 0) + 1
            if reply.prompt_messages != wanted:
                wrong.append(f"{chat}: {reply.prompt_messages} != {wanted}")
        else:
            extra.append(body[:60] or reply.outbound_id)
    missing = [name for name in names if name not in answered]
    twice = sum(n - 1 for n in answered.values())
    return {
        "chats": chats,
        "expected_prompt": wanted,
        "answered": len(answered),
        "missing": len(missing),
        "answered_twice": twice,
        "wrong_prompt_sizes": len(wrong),
        "wrong_examples": wrong[:5],
        "other_replies_after_restart": len(extra),
        "other_examples": extra[:5],
        "ok": not missing and not twice and not wrong and not extra,
    }


def start_timed(
    bench: Bench, env: dict[str, str], label: str, args: argparse.Namespace
) -> tuple[WorkerProcess, float, float]:
    """A worker as ``Bench.start_worker`` starts one, waiting up to ``--ready-timeout``
    (Bench waits 180 s, less than memory:// may need to recover big tables); returns it,
    the seconds from starting its process to /health saying ready, and its own figure."""
    worker = BenchWorker(env, bench.workdir / f"{label}.log", cwd=REPO)
    started = time.monotonic()
    worker.start()
    bench.workers.append(worker)  # stopped by Bench on the way out, whatever happens
    assert worker.proc is not None
    say(f"{label} pid {worker.proc.pid} starting (log {worker.log})")
    reported = worker.wait_ready(timeout=args.ready_timeout)
    return worker, time.monotonic() - started, reported


def restart(
    bench: Bench, worker: WorkerProcess, env: dict[str, str], case: Case, args: argparse.Namespace
) -> dict[str, Any]:
    """Stop the worker, start another with the same environment: time to ready, its RSS,
    the probe turns, and the dead letters at the end."""
    assert worker.proc is not None
    stopping = time.monotonic()
    bench.stop_worker(worker)
    stop_s = time.monotonic() - stopping
    start = asyncio.run(end_offsets(bench.bootstrap, case.topics["outbound"]))
    again, to_ready, reported = start_timed(bench, env, f"restarted-{case.run}", args)
    assert again.proc is not None
    ready_rss = rss_kib(again.proc.pid)
    time.sleep(args.settle_rss)
    rss = rss_kib(again.proc.pid)
    if not rss:
        raise RuntimeError(f"the restarted worker exited:\n{again.tail()}")
    say(
        f"restarted worker ready after {to_ready:.1f}s, RSS {rss['VmRSS'] / MIB:.1f} MiB "
        f"(peak {rss['VmHWM'] / MIB:.1f} MiB); probing {min(args.probe_chats, case.chats)} chats"
    )
    probed = asyncio.run(probe(bench, case, args, start))
    dead = asyncio.run(topic_size(bench.bootstrap, case.topics["dlq"]))
    bench.stop_worker(again)
    return {
        "stop_s": round(stop_s, 2),
        "restart_to_ready_s": round(to_ready, 2),
        "restart_ready_reported_s": round(reported, 2),
        "rss_restart_ready_kib": ready_rss.get("VmRSS"),
        "rss_after_restart_kib": rss["VmRSS"],
        "rss_restart_peak_kib": rss["VmHWM"],
        "probe": probed,
        "dead_letters_after_restart": dead,
        "restart_worker_log": log_problems(again.log),
    }


# --- one case -------------------------------------------------------------------------------


def read_rss(worker: WorkerProcess, settle: float) -> dict[str, int]:
    """VmRSS and VmHWM of the worker ``settle`` seconds from now; RuntimeError if it exited."""
    assert worker.proc is not None
    time.sleep(settle)
    rss = rss_kib(worker.proc.pid)
    if not rss:
        raise RuntimeError(f"the worker exited:\n{worker.tail()}")
    return rss


def run_case(bench: Bench, case: Case, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fill a fresh worker's windows, read its RSS, restart it: every figure of the case."""
    say(f"--- case {case.label} (app id {case.app_id})")
    began = time.monotonic()
    env = case_env(bench, case, base_url, args)
    started = time.monotonic()
    worker = bench.start_worker(env, label=f"worker-{case.run}")
    first_ready = time.monotonic() - started
    baseline = read_rss(worker, args.settle_rss)
    say(f"baseline RSS {baseline['VmRSS'] / MIB:.1f} MiB")
    result = asyncio.run(fill(bench, case, args, CpuMeter(bench.cpu_pids(worker))))
    say(f"all replies in; reading RSS in {args.settle_rss:g}s")
    after = read_rss(worker, args.settle_rss)
    result["worker_log"] = log_problems(worker.log)
    restarted = restart(bench, worker, env, case, args)
    delta = after["VmRSS"] - baseline["VmRSS"]
    ok = (
        fill_ok(result)
        and restarted["probe"]["ok"]
        and restarted["dead_letters_after_restart"] == 0
    )
    return {
        "store": case.store,
        "chats": case.chats,
        "turns": case.chats * args.turns_per_chat,
        "app_id": case.app_id,
        "topic_prefix": f"b{case.run}.",
        "first_ready_s": round(first_ready, 2),
        "rss_baseline_kib": baseline["VmRSS"],
        "rss_after_kib": after["VmRSS"],
        "rss_peak_kib": after["VmHWM"],
        "rss_delta_kib": delta,
        "bytes_per_chat": round(delta * 1024 / case.chats),
        **result,
        **restarted,
        "case_wall_s": round(time.monotonic() - began, 1),
        "ok": ok,
    }


# --- extrapolation ----------------------------------------------------------------------------


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least squares ``y = a + b x``; None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def extrapolate(cases: list[dict[str, Any]], store: str, target: int) -> dict[str, Any]:
    """Per-chat slopes of one store's RSS (filled, restarted) and restart time, and their
    values predicted at ``target`` chats."""
    own = sorted((c for c in cases if c["store"] == store), key=lambda c: c["chats"])
    xs = [float(c["chats"]) for c in own]
    out: dict[str, Any] = {"store": store, "sizes": [c["chats"] for c in own], "at": target}
    for name, key in (
        ("rss", "rss_after_kib"),
        ("rss_restart", "rss_after_restart_kib"),
        ("restart_s", "restart_to_ready_s"),
    ):
        fit = linear_fit(xs, [float(c[key]) for c in own])
        if fit is None:
            out[name] = None
            continue
        a, b = fit
        out[name] = {
            "a": round(a, 3),
            "b_per_chat": round(b, 6),
            "at_target": round(a + b * target, 1),
        }
    return out


# --- report ---------------------------------------------------------------------------------


def case_lines(case: dict[str, Any]) -> list[str]:
    """The results of one case: a headline, then fill, restart and checks."""
    window = case["window"]
    probed = case["probe"]
    return [
        f"{case['store']:<11} {case['chats']:>7} chats: RSS {case['rss_baseline_kib'] / MIB:.1f}"
        f" -> {case['rss_after_kib'] / MIB:.1f} MiB (peak {case['rss_peak_kib'] / MIB:.1f}),"
        f" +{case['rss_delta_kib'] / MIB:.1f} MiB = {case['bytes_per_chat'] / 1024:.2f} KiB/chat;"
        f" restart to ready {case['restart_to_ready_s']:.1f}s"
        f" (fresh {case['first_ready_s']:.1f}s), RSS after restart"
        f" {case['rss_after_restart_kib'] / MIB:.1f} MiB"
        f" (peak {case['rss_restart_peak_kib'] / MIB:.1f})"
        f"; {'OK' if case['ok'] else 'PROBLEMS'}",
        f"  filling took {case.get('last_reply_after_s')}s "
        f"({case.get('per_s_from_produce')} turns/s from produce start); case took "
        f"{case['case_wall_s']}s; stop took {case['stop_s']}s",
        *correctness_lines(case["check"], case["duplicates"], case["dead_letters"]),
        cpu_line(case["cpu"]),
        f"  windows: largest prompt {window['largest_prompt']} messages, "
        f"{window['wrong_prompt_sizes']} replies with an unexpected prompt size"
        + (f" e.g. {window['examples']}" if window["examples"] else ""),
        f"  after restart: {probed['answered']}/{probed['chats']} probe chats answered with"
        f" {probed['expected_prompt']}-message prompts ({probed['wrong_prompt_sizes']} wrong,"
        f" {probed['answered_twice']} twice), {probed['other_replies_after_restart']} other"
        f" replies, {case['dead_letters_after_restart']} dead letters"
        + (
            f" e.g. {probed['wrong_examples'] + probed['other_examples']}"
            if not probed["ok"]
            else ""
        ),
        *problems_lines("  worker", case["worker_log"]),
        *problems_lines("  restarted worker", case["restart_worker_log"]),
    ]


def fit_line(fit: dict[str, Any]) -> str:
    """One store's slopes and predictions, or why there are none."""
    if fit["rss"] is None:
        return f"{fit['store']:<11} extrapolation needs two sizes at least (have {fit['sizes']})"
    rss, again, restart_s = fit["rss"], fit["rss_restart"], fit["restart_s"]
    return (
        f"{fit['store']:<11} over {fit['sizes']} chats: {rss['b_per_chat']:.2f} KiB/chat"
        f" -> RSS {rss['at_target'] / MIB:.0f} MiB at {fit['at']} chats; restarted worker"
        f" {again['b_per_chat']:.2f} KiB/chat -> {again['at_target'] / MIB:.0f} MiB;"
        + (
            f" restart to ready +{restart_s['b_per_chat'] * 1000:.2f}s per 1000 chats"
            f" -> {restart_s['at_target']:.0f}s"
            if restart_s["b_per_chat"] > 0
            else " restart to ready does not grow measurably between these sizes"
        )
    )


def comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def sizes(value: str) -> list[int]:
    return [int(part) for part in comma_list(value)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument(
        "--sizes", type=sizes, help="comma list of chat counts, one case each (overrides --chats)"
    )
    parser.add_argument("--turns-per-chat", type=int, default=10)
    parser.add_argument(
        "--context-turns", type=int, default=20, help="WABOT_CONTEXT_TURNS (default: %(default)s)"
    )
    parser.add_argument(
        "--stores",
        "--store",
        type=comma_list,
        default=["memory://"],
        help="comma list of WABOT_STORE values, e.g. memory://,rocksdb:// (default: memory://)",
    )
    parser.add_argument(
        "--extrapolate-to",
        type=int,
        default=100_000,
        help="chats at which the fitted RSS is predicted (default: %(default)s)",
    )
    parser.add_argument(
        "--probe-chats",
        type=int,
        default=20,
        help="chats that get one more turn after the restart (default: %(default)s)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=900.0,
        help="longest wait for the restarted worker to be ready (default: %(default)s)",
    )
    parser.add_argument(
        "--settle-rss",
        type=float,
        default=10.0,
        help="seconds after ready and after the last reply before RSS is read",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=256, help="WABOT_RESPOND_MAX_IN_FLIGHT"
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    chat_counts = args.sizes or [args.chats]

    cases: list[dict[str, Any]] = []
    with Bench(args, "memory") as bench:
        bench.start_broker()
        base_url = bench.start_standin(0.0)
        for store in args.stores:
            for chats in chat_counts:
                cases.append(run_case(bench, new_case(bench, store, chats), base_url, args))

    fits = [extrapolate(cases, store, args.extrapolate_to) for store in args.stores]
    window = min(2 * args.turns_per_chat, args.context_turns)
    lines = [
        f"memory: {args.turns_per_chat} turns a chat (window of {window} entries), "
        f"stores {', '.join(args.stores)}, sizes {chat_counts}",
        *(line for case in cases for line in case_lines(case)),
        f"extrapolated to {args.extrapolate_to} chats (least squares RSS = a + b x chats):",
        *(f"  {fit_line(fit)}" for fit in fits),
        f"  machine: broker, LLM stand-in, worker and this client share {machine()['cpus']} cores",
    ]
    figures = {
        "bench": "memory",
        "stores": args.stores,
        "sizes": chat_counts,
        "turns_per_chat": args.turns_per_chat,
        "context_turns": args.context_turns,
        "extrapolate_to": args.extrapolate_to,
        "cases": cases,
        "extrapolation": fits,
        "ok": all(case["ok"] for case in cases),
        "machine": machine(),
    }
    emit("bench/memory.py", lines, figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    run_main(main)
