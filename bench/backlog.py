"""Worker memory while it works through a backlog: the RSS curve from start to the last reply.

The scene after an outage: ``--turns`` messages over ``--chats`` chats wait on wa.inbound
before any worker runs. Then one worker starts (LLM stand-in at ``--latency`` seconds) and
answers them all. Every ``--sample-s`` seconds the script records the worker's RSS and the
replies so far; it prints the curve, the peak, and whether every turn got one reply, in
order, with no dead letter. ``--max-queued`` is WABOT_RESPOND_MAX_QUEUED; a huge value (say
10000000) turns the flow control off and shows what a backlog did to the heap before it.

    .venv/bin/python -m bench.backlog --turns 200000 --chats 1000 --latency 1.0
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
    create_topics,
    emit,
    expected_per_chat,
    is_correct,
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


async def produce_backlog(bench: Bench, args: argparse.Namespace) -> None:
    await create_topics(bench.bootstrap, [bench.topics["inbound"]], args.partitions)
    records = round_robin_turns(bench.run, args.chats, args.turns)
    say(f"producing a backlog of {len(records)} messages over {args.chats} chats")
    produced = await produce_all(bench.bootstrap, bench.topics["inbound"], records)
    say(f"produced in {produced.flushed - produced.started:.1f}s ({produced.rate:.0f}/s)")


async def work_through(
    bench: Bench, args: argparse.Namespace, pid: int, meter: CpuMeter
) -> dict[str, Any]:
    collector = Collector(bench.bootstrap, bench.topics["outbound"])
    await collector.start()
    curve: list[dict[str, Any]] = []
    began = time.perf_counter()

    async def sample() -> None:
        while True:
            rss = rss_kib(pid).get("VmRSS", 0)
            curve.append(
                {
                    "t_s": round(time.perf_counter() - began, 1),
                    "replies": len(collector.replies),
                    "rss_mib": round(rss / 1024, 1),
                }
            )
            await asyncio.sleep(args.sample_s)

    sampler = asyncio.create_task(sample())
    try:
        meter.start()
        complete = await collector.wait_for(args.turns, args.stall_timeout, 0)
        meter.stop(args.turns)
        await asyncio.sleep(args.settle)
    finally:
        sampler.cancel()
        await collector.stop()
    return {
        "complete": complete,
        **rates(collector.replies, began),
        "duplicates": collector.duplicates,
        "check": check_replies(collector.replies, expected_per_chat(args.chats, args.turns)),
        "dead_letters": await topic_size(bench.bootstrap, bench.topics["dlq"]),
        "cpu": meter.result,
        "curve": curve,
    }


def curve_lines(curve: list[dict[str, Any]], rows: int = 24) -> list[str]:
    """At most ``rows`` evenly spaced samples of the curve, and the last one."""
    if not curve:
        return ["  (no sample)"]
    step = max(1, len(curve) // rows)
    picked = curve[::step]
    if picked[-1] is not curve[-1]:
        picked.append(curve[-1])
    top = max(point["rss_mib"] for point in curve) or 1.0
    return [
        f"  {p['t_s']:>7.1f}s {p['replies']:>8} replies {p['rss_mib']:>7.1f} MiB "
        + "#" * round(40 * p["rss_mib"] / top)
        for p in picked
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backlog", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--turns", type=int, default=200_000, help="backlog size (%(default)s)")
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0, help="LLM stand-in latency, s")
    parser.add_argument(
        "--max-in-flight", type=int, default=256, help="WABOT_RESPOND_MAX_IN_FLIGHT"
    )
    parser.add_argument(
        "--max-queued", type=int, default=4000, help="WABOT_RESPOND_MAX_QUEUED (%(default)s)"
    )
    parser.add_argument("--sample-s", type=float, default=2.0, help="RSS sample period")
    add_common_args(parser)
    # The guard reads the fetched backlog of wa.inbound before the first turn comes round:
    # the first reply can take minutes at 200,000 messages.
    parser.set_defaults(stall_timeout=300.0)
    args = parser.parse_args(argv)

    with Bench(args, "backlog") as bench:
        bench.start_broker()
        base_url = bench.start_standin(args.latency)
        asyncio.run(produce_backlog(bench, args))
        worker = bench.start_worker(
            bench.pipeline_env(
                base_url,
                WABOT_RESPOND_MAX_IN_FLIGHT=str(args.max_in_flight),
                WABOT_RESPOND_MAX_QUEUED=str(args.max_queued),
            )
        )
        assert worker.proc is not None
        ready_rss = rss_kib(worker.proc.pid).get("VmRSS", 0) / 1024
        meter = CpuMeter(bench.cpu_pids(worker))
        result = asyncio.run(work_through(bench, args, worker.proc.pid, meter))
        result["ready_rss_mib"] = round(ready_rss, 1)
        result["worker_rss_kib"] = rss_kib(worker.proc.pid)
        result["worker_log"] = log_problems(worker.log)
        bench.stop_worker(worker)

    curve = result["curve"]
    peak = max((p["rss_mib"] for p in curve), default=0.0)
    # Past the first tenth of the run the heap should stay flat: the later half's peak
    # against the first half's says whether it grows with the backlog worked through.
    half = len(curve) // 2
    first = max((p["rss_mib"] for p in curve[:half]), default=0.0)
    second = max((p["rss_mib"] for p in curve[half:]), default=0.0)
    lines = [
        f"backlog: {args.turns} waiting messages over {args.chats} chats, LLM {args.latency}s, "
        f"WABOT_RESPOND_MAX_QUEUED={args.max_queued}: worker RSS peak {peak:.0f} MiB "
        f"(ready: {result['ready_rss_mib']:.0f} MiB; first half of the run {first:.0f} MiB, "
        f"second half {second:.0f} MiB); {result.get('per_s_first_to_last')} replies/s",
        *correctness_lines(result["check"], result["duplicates"], result["dead_letters"]),
        cpu_line(result["cpu"]),
        *problems_lines("  worker", result["worker_log"]),
        "  RSS over the run:",
        *curve_lines(curve),
        f"  machine: broker, LLM stand-in, worker and this client share {machine()['cpus']} cores",
    ]
    figures = {
        "bench": "backlog",
        "turns": args.turns,
        "chats": args.chats,
        "latency_s": args.latency,
        "max_queued": args.max_queued,
        "max_in_flight": args.max_in_flight,
        "rss_peak_mib": peak,
        "rss_first_half_mib": first,
        "rss_second_half_mib": second,
        "result": result,
        "machine": machine(),
    }
    emit("bench/backlog.py", lines, figures)
    ok = result["complete"] and is_correct(
        result["check"], result["duplicates"], result["dead_letters"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
