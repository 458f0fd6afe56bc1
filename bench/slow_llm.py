"""Replies per second of one worker when the LLM is slow, against a naive one-at-a-time agent.

The LLM stand-in answers after ``--latency`` seconds. ``--turns`` messages spread round-robin
over ``--chats`` chats (``--turns / --chats`` per chat) are all produced up front; one worker
with ``WABOT_RESPOND_MAX_IN_FLIGHT=--max-in-flight`` answers them. Each body is
``"<chat> <k>"`` and the stand-in echoes it, so the replies show whether each chat was answered
in order (k = 0..n-1) and whether every turn got exactly one reply (distinct outbound ids).

Then, in the same run, the baseline: bench/naive_app.py (one plain Faust agent calling the LLM
and producing the reply, one record at a time) answers ``--naive-turns`` messages at the same
latency.

    .venv/bin/python -m bench.slow_llm --latency 1.0 --chats 1000 --turns 20000 --naive-turns 200
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import (
    FAUST,
    REPO,
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
from bench.turn_cost import (
    Sampler,
    cpu_shares,
    event_loop,
    faust_plumbing,
    floor,
    floor_lines,
    record_counts,
    record_lines,
    share_lines,
)
from pipeline.testing.workers import WorkerProcess


async def measure_pipeline(
    bench: Bench, args: argparse.Namespace, meter: CpuMeter, sampler: Sampler | None
) -> dict[str, Any]:
    records = round_robin_turns(bench.run, args.chats, args.turns)
    expected = expected_per_chat(args.chats, args.turns)
    collector = Collector(bench.bootstrap, bench.topics["outbound"])
    await collector.start()
    try:
        say(f"producing {len(records)} turns over {args.chats} chats")
        meter.start()
        if sampler is not None:
            sampler.start()
        produced = await produce_all(bench.bootstrap, bench.topics["inbound"], records)
        say(f"produced in {produced.flushed - produced.started:.2f}s ({produced.rate:.0f}/s)")
        complete = await collector.wait_for(len(records), args.stall_timeout, 0)
        meter.stop(len(records))
        if sampler is not None:
            sampler.stop()
        await asyncio.sleep(args.settle)
    finally:
        await collector.stop()
    return {
        "complete": complete,
        "produce_s": round(produced.flushed - produced.started, 3),
        **rates(collector.replies, produced.started),
        "duplicates": collector.duplicates,
        "duplicate_examples": collector.duplicate_ids,
        "check": check_replies(collector.replies, expected),
        "dead_letters": await topic_size(bench.bootstrap, bench.topics["dlq"]),
        "cpu": meter.result,
    }


async def measure_naive(bench: Bench, args: argparse.Namespace, run: str) -> dict[str, Any]:
    topic_in, topic_out = f"b{run}.naive.in", f"b{run}.naive.out"
    chats = min(args.chats, args.naive_turns)
    records = round_robin_turns(run, chats, args.naive_turns)
    expected = expected_per_chat(chats, args.naive_turns)
    collector = Collector(bench.bootstrap, topic_out)
    await collector.start()
    try:
        produced = await produce_all(bench.bootstrap, topic_in, records)
        say(f"naive agent: produced {len(records)} turns; about {len(records) * args.latency:.0f}s")
        complete = await collector.wait_for(
            len(records), max(args.stall_timeout, 3 * args.latency + 10), args.settle
        )
    finally:
        await collector.stop()
    return {
        "complete": complete,
        **rates(collector.replies, produced.started),
        "duplicates": collector.duplicates,
        "check": check_replies(collector.replies, expected),
    }


def start_naive(
    bench: Bench, run: str, base_url: str, partitions: int, mode: str = "llm"
) -> WorkerProcess:
    """bench/naive_app.py as a Faust worker on topics ``b<run>.naive.*`` (created here);
    ``mode``: ``llm`` (the baseline) or ``plumbing`` (the Faust floor)."""
    topics = [f"b{run}.naive.{name}" for name in ("in", "out", "calls")]
    asyncio.run(create_topics(bench.bootstrap, topics, partitions))
    return bench.start_worker(
        {
            "PYTHONPATH": str(REPO),
            "WABOT_BROKER_URL": f"kafka://{bench.bootstrap}",
            "BENCH_NAIVE_APP_ID": f"bench-naive-{run}",
            "BENCH_NAIVE_IN": topics[0],
            "BENCH_NAIVE_OUT": topics[1],
            "BENCH_NAIVE_CALLS": topics[2],
            "BENCH_NAIVE_MODE": mode,
            "BENCH_NAIVE_LLM_BASE_URL": base_url,
            "BENCH_NAIVE_PARTITIONS": str(partitions),
            "BENCH_NAIVE_DATA_DIR": str(bench.workdir / f"naive-{mode}-data"),
        },
        label=f"naive-{mode}",
        argv=[FAUST, "-A", "bench.naive_app", "worker", "-l", "warn"],
    )


def worker_ms(cpu: dict[str, Any], workers: int) -> float | None:
    """CPU ms a turn of the worker (of all workers together when several)."""
    names = ["worker"] if workers == 1 else [f"worker{n}" for n in range(1, workers + 1)]
    values = [cpu.get(name, {}).get("cpu_ms_per_turn") for name in names]
    return round(sum(values), 2) if all(v is not None for v in values) else None


def merged_records(workers: list[Any], turns: int, bench: Bench) -> dict[str, Any]:
    """The per-turn record table of the workers together (from each one's /metrics)."""
    prefix = f"b{bench.run}."
    tables = []
    for worker in workers:
        try:
            tables.append(
                record_counts(worker.port, prefix, bench.workdir / f"metrics-{worker.port}.txt")
            )
        except OSError as exc:
            say(f"could not read /metrics of the worker on port {worker.port}: {exc}")
    merged: dict[str, Any] = {"agents": {}, "producer": {}}
    for table in tables:
        for agent, d in table["agents"].items():
            into = merged["agents"].setdefault(agent, {"in": {}, "out": {}})
            for way in ("in", "out"):
                for topic, n in d[way].items():
                    into[way][topic] = into[way].get(topic, 0) + n
        for topic, n in table["producer"].items():
            merged["producer"][topic] = merged["producer"].get(topic, 0) + n
    app = f"bench-{bench.name}-{bench.run}-"

    def per_turn(counts: dict[str, float]) -> dict[str, float]:
        return {t.replace(app, "{app}-"): round(n / turns, 2) for t, n in sorted(counts.items())}

    return {
        "agents": {
            a: {"in": per_turn(d["in"]), "out": per_turn(d["out"])}
            for a, d in sorted(merged["agents"].items())
        },
        "producer": per_turn(merged["producer"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.slow_llm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--latency", type=float, default=1.0, help="LLM stand-in latency, s")
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=20000, help="spread round-robin over chats")
    parser.add_argument(
        "--max-in-flight", type=int, default=256, help="WABOT_RESPOND_MAX_IN_FLIGHT"
    )
    parser.add_argument(
        "--naive-turns", type=int, default=200, help="turns for the naive agent (0: skip it)"
    )
    parser.add_argument(
        "--cpu-shares",
        action="store_true",
        help="sample the worker with py-spy over the run: its CPU by agent and layer",
    )
    parser.add_argument(
        "--floor-calls",
        type=int,
        default=2000,
        help="LLM client calls (and turns of plain aiokafka) for the floor; 0 skips it",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)

    with Bench(args, "slow") as bench:
        bench.start_broker()
        base_url = bench.start_standin(args.latency)
        workers = bench.start_workers(
            bench.pipeline_env(base_url, WABOT_RESPOND_MAX_IN_FLIGHT=str(args.max_in_flight)),
            args.workers,
        )
        meter = CpuMeter(bench.cpu_pids(*workers))
        first = workers[0]
        sampler = (
            Sampler(first.proc.pid, bench.workdir / "worker.pyspy")
            if args.cpu_shares and first.proc is not None
            else None
        )
        pipeline = asyncio.run(measure_pipeline(bench, args, meter, sampler))
        pipeline["records_per_turn"] = merged_records(workers, args.turns, bench)
        if sampler is not None:
            pipeline["cpu_shares_pct"] = cpu_shares(sampler.out)
        rss = [rss_kib(w.proc.pid) for w in workers if w.proc is not None]
        pipeline["worker_rss_kib"] = rss[0] if len(rss) == 1 else rss
        pipeline["worker_log"] = merged_problems([log_problems(w.log) for w in workers])
        for worker in workers:  # the naive agent gets the machine to itself
            bench.stop_worker(worker)
        pipeline["floor"] = (
            floor(
                bench.bootstrap,
                base_url,
                bench.run,
                event_loop(),
                calls=args.floor_calls,
                in_flight=args.max_in_flight,
                turns=args.floor_calls,
                partitions=args.partitions,
            )
            if args.floor_calls
            else {}
        )

        if pipeline["floor"]:
            # The same records through Faust, one agent, no LLM: what Faust itself costs.
            run = bench.run + "p"
            plumbing = start_naive(bench, run, base_url, args.partitions, "plumbing")
            pipeline["floor"]["faust"] = asyncio.run(
                faust_plumbing(bench.bootstrap, run, plumbing, args.floor_calls)
            )
            bench.stop_worker(plumbing)

        naive: dict[str, Any] = {}
        if args.naive_turns > 0:
            run = bench.run + "n"
            naive_worker = start_naive(bench, run, base_url, args.partitions)
            naive = asyncio.run(measure_naive(bench, args, run))
            naive["worker_log"] = log_problems(naive_worker.log)
            bench.stop_worker(naive_worker)

    rate = pipeline.get("per_s_first_to_last")
    naive_rate = naive.get("per_s_first_to_last")
    ratio = round(rate / naive_rate, 1) if rate and naive_rate else None
    per_chat = args.turns / args.chats
    p = pipeline
    bound = min(args.max_in_flight * args.workers, args.chats) / args.latency
    each = round(rate / args.workers, 1) if rate else None
    rss_list = (
        p["worker_rss_kib"] if isinstance(p["worker_rss_kib"], list) else [p["worker_rss_kib"]]
    )
    lines = [
        f"slow LLM ({args.latency} s): {args.chats} chats, {args.turns} turns "
        f"({per_chat:g} per chat), {args.workers} worker(s): {rate} replies/s "
        f"({each}/s per worker; cap {args.max_in_flight} per worker); "
        + (
            f"naive single agent: {naive_rate}/s; ratio {ratio}"
            if args.naive_turns
            else "naive single agent: skipped (--naive-turns 0)"
        ),
        f"  pipeline: {p.get('replies', 0)} replies, first {p.get('first_reply_after_s')}s"
        f" and last {p.get('last_reply_after_s')}s after produce start "
        f"({p.get('per_s_from_produce')}/s from produce start); "
        f"upper bound min(cap x workers, chats)/latency = {bound:g}/s",
        *correctness_lines(pipeline["check"], pipeline["duplicates"], pipeline["dead_letters"]),
        cpu_line(pipeline["cpu"]),
        *(
            floor_lines(pipeline["floor"], worker_ms(pipeline["cpu"], args.workers))
            if pipeline["floor"]
            else []
        ),
        *record_lines(pipeline["records_per_turn"]),
        *share_lines(pipeline.get("cpu_shares_pct", {}), worker_ms(pipeline["cpu"], args.workers)),
        "  worker RSS at the end: "
        + ", ".join(
            f"{r.get('VmRSS', 0) / 1024:.0f} MiB (peak {r.get('VmHWM', 0) / 1024:.0f} MiB)"
            for r in rss_list
        ),
        *problems_lines("  worker", pipeline["worker_log"]),
    ]
    if naive:
        lines += [
            f"  naive: {naive.get('replies', 0)} replies of {args.naive_turns}, "
            f"{naive_rate}/s first to last "
            f"({naive.get('per_s_from_produce')}/s from produce start)",
            *correctness_lines(naive["check"], naive["duplicates"]),
            *problems_lines("  naive worker", naive["worker_log"]),
        ]
    lines.append(
        f"  machine: broker, LLM stand-in, worker and this client share {machine()['cpus']} cores"
    )
    figures = {
        "bench": "slow_llm",
        "latency_s": args.latency,
        "chats": args.chats,
        "turns": args.turns,
        "max_in_flight": args.max_in_flight,
        "partitions": args.partitions,
        "workers": args.workers,
        "replies_per_s": rate,
        "replies_per_s_per_worker": each,
        "naive_turns": args.naive_turns,
        "naive_replies_per_s": naive_rate,
        "ratio": ratio,
        "pipeline": pipeline,
        "naive": naive,
        "topic_prefix": f"b{bench.run}.",
        "machine": machine(),
    }
    emit("bench/slow_llm.py", lines, figures)
    complete = pipeline["complete"] and (not naive or naive["complete"])
    correct = is_correct(pipeline["check"], pipeline["duplicates"], pipeline["dead_letters"])
    return 0 if complete and correct else 1


if __name__ == "__main__":
    run_main(main)
