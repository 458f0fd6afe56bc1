"""Resident memory of one worker holding many chats, each with a full context window.

``--chats`` chats each get ``--turns-per-chat`` turns (produced round-robin: turn k of every
chat, then turn k+1), answered by an instant LLM stand-in. With the default 10 turns a
chat's window holds 20 entries after its last reply (10 exchanges, WABOT_CONTEXT_TURNS=20).
RSS (VmRSS from /proc/<pid>/status) is read right after the worker is ready (baseline) and
after every reply arrived and ``--settle-rss`` seconds passed; the difference divided by the
chats is the memory per chat: its window plus everything else the worker keeps per chat
(guard state with the remembered message ids, chat state, rate counters), in the table store
``--store`` (memory:// by default).

Each reply echoes the prompt's message count, so the run also checks that windows filled up:
turn k of a chat must have been sent with 2 + min(2k, context turns) messages.

    .venv/bin/python -m bench.memory --chats 100000 --turns-per-chat 10
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import (
    Bench,
    Collector,
    CpuMeter,
    add_common_args,
    check_replies,
    correctness_lines,
    cpu_line,
    emit,
    expected_per_chat,
    log_problems,
    machine,
    problems_lines,
    produce_all,
    rates,
    round_robin_turns,
    rss_kib,
    run_main,
    say,
    topic_size,
)


def window_check(collector: Collector, context_turns: int) -> dict[str, Any]:
    """Replies whose prompt had the wrong number of messages for their turn number."""
    wrong: list[str] = []
    largest = 0
    for reply in collector.replies:
        if reply.body is None:
            continue
        k = int(reply.body.rpartition(" ")[2])
        expected = 2 + min(2 * k, context_turns)
        largest = max(largest, reply.prompt_messages)
        if reply.prompt_messages != expected:
            wrong.append(f"{reply.chat_id} k={k}: {reply.prompt_messages} != {expected}")
    return {"wrong_prompt_sizes": len(wrong), "examples": wrong[:5], "largest_prompt": largest}


async def fill(
    bench: Bench, args: argparse.Namespace, turns: int, meter: CpuMeter
) -> dict[str, Any]:
    say(f"building {turns} turns")
    records = round_robin_turns(bench.run, args.chats, turns)
    expected = expected_per_chat(args.chats, turns)
    collector = Collector(bench.bootstrap, bench.topics["outbound"])
    await collector.start()
    try:
        say(f"producing {turns} turns over {args.chats} chats")
        meter.start()
        produced = await produce_all(bench.bootstrap, bench.topics["inbound"], records)
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
        "dead_letters": await topic_size(bench.bootstrap, bench.topics["dlq"]),
        "cpu": meter.result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--turns-per-chat", type=int, default=10)
    parser.add_argument(
        "--context-turns", type=int, default=20, help="WABOT_CONTEXT_TURNS (default: %(default)s)"
    )
    parser.add_argument("--store", default="memory://", help="WABOT_STORE (default: %(default)s)")
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
    turns = args.chats * args.turns_per_chat

    with Bench(args, "memory") as bench:
        bench.start_broker()
        base_url = bench.start_standin(0.0)
        worker = bench.start_worker(
            bench.pipeline_env(
                base_url,
                WABOT_STORE=args.store,
                WABOT_CONTEXT_TURNS=str(args.context_turns),
                WABOT_RESPOND_MAX_IN_FLIGHT=str(args.max_in_flight),
            )
        )
        assert worker.proc is not None
        time.sleep(args.settle_rss)
        baseline = rss_kib(worker.proc.pid)
        if not baseline:
            raise RuntimeError(f"the worker exited:\n{worker.tail()}")
        say(f"baseline RSS {baseline['VmRSS'] / 1024:.1f} MiB")
        result = asyncio.run(fill(bench, args, turns, CpuMeter(bench.cpu_pids(worker))))
        say(f"all replies in; reading RSS in {args.settle_rss:g}s")
        time.sleep(args.settle_rss)
        after = rss_kib(worker.proc.pid)
        if not after:
            raise RuntimeError(f"the worker exited:\n{worker.tail()}")
        result["worker_log"] = log_problems(worker.log)

    delta_kib = after["VmRSS"] - baseline["VmRSS"]
    per_chat = delta_kib * 1024 / args.chats
    window = result["window"]
    lines = [
        f"memory: {args.chats} chats x {args.turns_per_chat} turns "
        f"(window of {min(2 * args.turns_per_chat, args.context_turns)} entries a chat, "
        f"store {args.store}): worker RSS {baseline['VmRSS'] / 1024:.1f} MiB after ready -> "
        f"{after['VmRSS'] / 1024:.1f} MiB after all replies (peak {after['VmHWM'] / 1024:.1f} MiB)"
        f"; +{delta_kib / 1024:.1f} MiB = {per_chat / 1024:.2f} KiB per chat",
        f"  filling took {result.get('last_reply_after_s')}s "
        f"({result.get('per_s_from_produce')} turns/s from produce start)",
        *correctness_lines(result["check"], result["duplicates"], result["dead_letters"]),
        cpu_line(result["cpu"]),
        f"  windows: largest prompt {window['largest_prompt']} messages, "
        f"{window['wrong_prompt_sizes']} replies with an unexpected prompt size"
        + (f" e.g. {window['examples']}" if window["examples"] else ""),
        *problems_lines("  worker", result["worker_log"]),
        f"  machine: broker, LLM stand-in, worker and this client share {machine()['cpus']} cores",
    ]
    figures = {
        "bench": "memory",
        "chats": args.chats,
        "turns_per_chat": args.turns_per_chat,
        "context_turns": args.context_turns,
        "store": args.store,
        "rss_baseline_kib": baseline["VmRSS"],
        "rss_after_kib": after["VmRSS"],
        "rss_peak_kib": after["VmHWM"],
        "rss_delta_kib": delta_kib,
        "bytes_per_chat": round(per_chat),
        **result,
        "topic_prefix": f"b{bench.run}.",
        "machine": machine(),
    }
    emit("bench/memory.py", lines, figures)
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    run_main(main)
