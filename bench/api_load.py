"""Load on the operator API: requests per second and latency of POST /api/messages and GET
/api/chats/{id}/messages, against the real ``faust -A pipeline api`` on 127.0.0.1.

The run starts (or, with ``--bootstrap``, uses) a Kafka broker and a store (a SQLite file by
default; ``--database postgresql``: a throwaway cluster from Debian's ``postgresql`` package
with ``fsync=on``, or ``--postgres-url``), and fills the store with history the product's own
way: ``--history-records`` records of the conversation mix of ``bench.archive`` over
``--chats`` chats are produced and written by the archive (``agents.archive.Archiver`` with
the store's ``StoreWriter``). Then it starts the API as a subprocess with one token and no
per-token request limit (``WABOT_API_REQUESTS_PER_MINUTE=0``; the per-chat limit on manual
messages is raised out of the way but still counted) and drives ``--requests`` requests,
``--concurrency`` at a time over keep-alive connections (aiohttp), in phases run one after
the other, each with an equal share of the requests:

- ``get``: GET /api/chats/{id}/messages?limit=50, round-robin over the chats;
- ``post``: POST /api/messages to those chats, each with its own Idempotency-Key, except
  every ``--retry-every``-th one, which sends the previous key again (a retried POST, maybe
  racing the first): it must get the same ``outbound_id``;
- ``mixed``: the two interleaved, ``--post-share`` of them posts.

Reported per phase and endpoint: requests per second (the phase's requests over its wall
time, first request sent to last answer), p50/p95/p99/max latency (client side: request
sent to body read), status codes, and the CPU the API process, the broker and this client
used. After the load the run reads wa.outbound from offset 0 and checks that every accepted
POST's ``outbound_id`` is there exactly once as a ``manual`` message (no missing, no
duplicate, no stray one). The exit status is 1 on any 5xx, any status other than 200/202,
a connection error, or a failed outbound check; 130 on Ctrl-C. Bounded: each phase stops
sending after ``--max-seconds``; everything the run started (broker, PostgreSQL, the API) is
stopped by its PID at the end.

    .venv/bin/python -m bench.api_load --requests 12000 --concurrency 32
    .venv/bin/python -m bench.api_load --requests 12000 --concurrency 32 --database postgresql
    .venv/bin/python -m bench.api_load --requests 900 --history-records 2000 --chats 50  # quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.archive import KINDS, archive_into, backlog, produce
from bench.common import (
    FAUST,
    Bench,
    Collector,
    CpuMeter,
    _stop_process,
    add_common_args,
    cpu_line,
    create_topics,
    emit,
    log_problems,
    machine,
    problems_lines,
    run_main,
    say,
    spawn,
    wait_http_ok,
)
from pipeline.broker import free_port
from pipeline.store.engine import shown
from pipeline.testing.postgres import throwaway_postgres

TOKEN_NAME = "load"
POST = "POST /api/messages"
GET = "GET /api/chats/{chat_id}/messages"


@dataclass
class Sample:
    endpoint: str
    status: int  # 0: no answer (connection error, timeout)
    seconds: float


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    cpu: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Posts:
    """What the POSTs were told: outbound ids accepted, and retries answered differently."""

    by_key: dict[str, str] = field(default_factory=dict)  # idempotency key -> outbound id
    retries: int = 0
    retry_mismatches: int = 0
    states: Counter[str] = field(default_factory=Counter)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least 1
    return ordered[int(rank) - 1]


def summary(samples: list[Sample], wall_s: float) -> dict[str, Any]:
    ms = [s.seconds * 1000 for s in samples]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "requests": len(samples),
        "per_s": round(len(samples) / wall_s, 1) if wall_s > 0 else None,
        "p50_ms": rounded(percentile(ms, 50)),
        "p95_ms": rounded(percentile(ms, 95)),
        "p99_ms": rounded(percentile(ms, 99)),
        "max_ms": rounded(max(ms) if ms else None),
        "status": dict(sorted(Counter(str(s.status) for s in samples).items())),
    }


class Load:
    """Drives one phase: ``plan`` is a list of (endpoint, chat, key or None)."""

    def __init__(self, base: str, token: str, run: str, concurrency: int, posts: Posts) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.run = run
        self.concurrency = concurrency
        self.posts = posts

    async def phase(
        self, name: str, plan: list[tuple[str, str, str | None]], max_seconds: float
    ) -> Phase:
        result = Phase(name)
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self.headers
        ) as session:
            queue = iter(enumerate(plan))
            started = time.perf_counter()
            deadline = started + max_seconds

            async def client() -> None:
                for index, (endpoint, chat, key) in queue:
                    if time.perf_counter() > deadline:
                        result.stopped_early = True
                        return
                    result.samples.append(
                        await self.one(session, result, index, endpoint, chat, key)
                    )

            await asyncio.gather(*(client() for _ in range(self.concurrency)))
            result.wall_s = time.perf_counter() - started
        return result

    async def one(
        self,
        session: aiohttp.ClientSession,
        phase: Phase,
        index: int,
        endpoint: str,
        chat: str,
        key: str | None,
    ) -> Sample:
        began = time.perf_counter()
        try:
            if endpoint == POST:
                assert key is not None
                async with session.post(
                    f"{self.base}/api/messages",
                    json={"chat_id": chat, "text": f"load {key}"},
                    headers={"Idempotency-Key": key},
                ) as response:
                    body = await response.read()
                    status = response.status
                if status == 202:
                    answer = json.loads(body)
                    self.posts.states[answer["state"]] += 1
                    first = self.posts.by_key.setdefault(key, answer["outbound_id"])
                    if first != answer["outbound_id"]:
                        self.posts.retry_mismatches += 1
            else:
                async with session.get(
                    f"{self.base}/api/chats/{chat}/messages", params={"limit": "50"}
                ) as response:
                    body = await response.read()
                    status = response.status
                if status == 200 and not json.loads(body)["messages"]:
                    phase.errors["GET answered no message"] += 1
            if status not in (200, 202):
                phase.errors[f"{endpoint} -> {status}: {body[:200]!r}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = 0
            phase.errors[f"{endpoint}: {type(exc).__name__}"] += 1
        return Sample(endpoint, status, time.perf_counter() - began)


def plans(
    args: argparse.Namespace, chats: list[str], run: str
) -> list[tuple[str, list[tuple[str, str, str | None]]]]:
    """The phases' request plans, deterministic for a seed."""
    rng = random.Random(args.seed)
    names = [p for p in args.phases.split(",") if p]
    each = args.requests // len(names)
    out = []
    posts = 0
    for name in names:
        plan: list[tuple[str, str, str | None]] = []
        previous: tuple[str, str] | None = None  # the last POST's chat and key
        for i in range(each):
            chat = chats[i % len(chats)]
            is_post = name == "post" or (name == "mixed" and rng.random() < args.post_share)
            if not is_post:
                plan.append((GET, chat, None))
                continue
            posts += 1
            if previous is not None and args.retry_every and posts % args.retry_every == 0:
                chat, key = previous  # a retried POST: same chat, key and text
            else:
                key = f"{run}-{posts}"
            plan.append((POST, chat, key))
            previous = (chat, key)
        out.append((name, plan))
    return out


def start_api(bench: Bench, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """``faust -A pipeline api`` in its own process; returns once /readyz says 200."""
    log = bench.workdir / "api.log"
    proc = spawn([FAUST, "-A", "pipeline", "api"], env, log)
    bench.standins.append(proc)  # stopped by its PID when the run ends
    say(f"API pid {proc.pid} starting on 127.0.0.1:{port} (log {log})")
    started = time.monotonic()
    wait_http_ok(proc, f"http://127.0.0.1:{port}/readyz", log, "the API", 120.0)
    say(f"API ready after {time.monotonic() - started:.1f}s")
    return proc


async def check_outbound(
    bootstrap: str, topic: str, accepted: set[str], wait_s: float, settle: float
) -> dict[str, Any]:
    """Read ``topic`` from offset 0: every accepted outbound id once, as ``manual``."""
    collector = Collector(bootstrap, topic)
    await collector.start()
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            seen = {r.outbound_id for r in collector.replies if r.kind == "manual"}
            if accepted <= seen:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(settle)
    finally:
        await collector.stop()
    manual = [r.outbound_id for r in collector.replies if r.kind == "manual"]
    seen = set(manual)
    missing = accepted - seen
    stray = seen - accepted
    return {
        "accepted_posts": len(accepted),
        "manual_on_topic": len(seen),
        "missing": len(missing),
        "missing_examples": sorted(missing)[:5],
        "stray": len(stray),
        "duplicates": collector.duplicates,
        "duplicate_examples": collector.duplicate_ids[:5],
        "unreadable": collector.unreadable,
        "exactly_once": not missing and not stray and collector.duplicates == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=12_000, help="requests in all phases (%(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight (%(default)s)"
    )
    parser.add_argument(
        "--phases", default="get,post,mixed", help="which, comma-separated (%(default)s)"
    )
    parser.add_argument(
        "--post-share", type=float, default=0.2, help="posts in the mixed phase (%(default)s)"
    )
    parser.add_argument(
        "--retry-every", type=int, default=50, help="every n-th POST repeats a key (0: none)"
    )
    parser.add_argument("--chats", type=int, default=200, help="chats in the store (%(default)s)")
    parser.add_argument(
        "--history-records",
        type=int,
        default=40_000,
        help="records archived into the store first (%(default)s)",
    )
    parser.add_argument(
        "--database", choices=["sqlite", "postgresql"], default="sqlite", help="(%(default)s)"
    )
    parser.add_argument("--postgres-url", help="a PostgreSQL server to use (maintenance db)")
    parser.add_argument(
        "--max-seconds", type=float, default=90, help="stop a phase after this (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=20261130, help="of the request mix")
    add_common_args(parser)
    args = parser.parse_args()
    args.profile_worker = None
    with Bench(args, "api_load") as bench:
        return drive(args, bench)


def drive(args: argparse.Namespace, bench: Bench) -> int:
    bootstrap = bench.start_broker()
    with contextlib.ExitStack() as stack:
        if args.database == "sqlite":
            url = f"sqlite+aiosqlite:///{bench.workdir / 'store' / 'wabot.db'}"
            (bench.workdir / "store").mkdir(exist_ok=True)
        elif args.postgres_url:
            url = args.postgres_url
        else:
            server = stack.enter_context(throwaway_postgres(fsync=True))
            url = server.create_database()
            say(f"PostgreSQL at 127.0.0.1:{server.port} (fsync on)")
        # History, the product's way: a produced backlog written by the archive.
        names = {topic: bench.topics[topic] for topic in KINDS}
        topics, expected = backlog(args.history_records, args.chats)
        asyncio.run(create_topics(bootstrap, list(names.values()), args.partitions))
        asyncio.run(produce(bootstrap, names, topics))
        say(f"archiving {args.history_records} records into {args.database} at {shown(url)}")
        filled = asyncio.run(
            archive_into(url, bootstrap, names, args.history_records, 500, timeout=600)
        )
        say(f"store filled: {filled['rows']} ({filled['records_per_s']} records/s)")
        chats = sorted({key.decode() for key, _ in topics["inbound"]})

        token = os.urandom(24).hex()
        port = free_port()
        env = bench.pipeline_env(
            "http://127.0.0.1:9/v1",
            WABOT_DATABASE_URL=url,
            WABOT_API_TOKENS=json.dumps({TOKEN_NAME: token}),
            WABOT_API_PORT=str(port),
            WABOT_WEB_HOST="127.0.0.1",
            WABOT_API_REQUESTS_PER_MINUTE="0",
            # Manual messages per chat and minute: counted (the query runs) but never over.
            WABOT_RATE_CHAT_PER_MINUTE="1000000",
        )
        api = start_api(bench, env, port)
        pids = {"api": api.pid, "bench": os.getpid()}
        if bench.broker is not None and (info := bench.broker.info()) is not None:
            pids["broker"] = info.pid

        posts = Posts()
        load = Load(f"http://127.0.0.1:{port}", token, bench.run, args.concurrency, posts)
        phases: list[Phase] = []
        planned = plans(args, chats, bench.run)
        keys = [key for _, plan in planned for endpoint, _, key in plan if endpoint == POST]
        posts.retries = len(keys) - len(set(keys))
        for name, plan in planned:
            say(f"phase {name}: {len(plan)} requests, {args.concurrency} in flight")
            meter = CpuMeter(pids)
            meter.start()
            phase = asyncio.run(load.phase(name, plan, args.max_seconds))
            phase.cpu = meter.stop()
            phases.append(phase)
            say(
                f"phase {name}: {len(phase.samples)} in {phase.wall_s:.1f}s = "
                f"{len(phase.samples) / phase.wall_s:.0f}/s"
            )
        accepted = set(posts.by_key.values())
        say(f"reading {bench.topics['outbound']} for the {len(accepted)} accepted posts")
        outbound = asyncio.run(
            check_outbound(
                bootstrap, bench.topics["outbound"], accepted, args.stall_timeout, args.settle
            )
        )
        problems = log_problems(bench.workdir / "api.log")
        # Before the store goes (PostgreSQL stops when this block ends).
        say(f"stopping the API pid {api.pid}")
        _stop_process(api)
        bench.standins.remove(api)

    lines = [
        f"store: {args.database}, {filled['rows']['chats']} chats, "
        f"{filled['rows']['messages']} messages (history of {args.history_records} records); "
        f"{args.partitions} partitions; {args.concurrency} requests in flight",
    ]
    figures_phases: dict[str, Any] = {}
    statuses: Counter[int] = Counter()
    for phase in phases:
        by_endpoint = {
            endpoint: summary([s for s in phase.samples if s.endpoint == endpoint], phase.wall_s)
            for endpoint in (GET, POST)
            if any(s.endpoint == endpoint for s in phase.samples)
        }
        total = summary(phase.samples, phase.wall_s)
        statuses.update(s.status for s in phase.samples)
        figures_phases[phase.name] = {
            "all": total,
            "by_endpoint": by_endpoint,
            "wall_s": round(phase.wall_s, 2),
            "stopped_early": phase.stopped_early,
            "cpu": phase.cpu,
            "errors": dict(phase.errors.most_common(10)),
        }
        lines.append(
            f"{phase.name}: {total['requests']} requests in {phase.wall_s:.1f} s = "
            f"{total['per_s']} /s" + (" (stopped at --max-seconds)" if phase.stopped_early else "")
        )
        for endpoint, s in by_endpoint.items():
            lines.append(
                f"  {endpoint:<36} {s['requests']:>6} req, {s['per_s']:>7} /s; p50 "
                f"{s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, max "
                f"{s['max_ms']} ms; status {s['status']}"
            )
        api_cpu = phase.cpu.get("api", {}).get("cpu_s")
        if api_cpu is not None and phase.samples:
            figures_phases[phase.name]["api_cpu_ms_per_request"] = round(
                api_cpu * 1000 / len(phase.samples), 2
            )
        lines.append(
            cpu_line(phase.cpu)
            + f"; API {figures_phases[phase.name].get('api_cpu_ms_per_request')} ms CPU a request"
        )
        for error, n in phase.errors.most_common(5):
            lines.append(f"  {n} x {error}")
    lines.append(
        f"posts: {len(posts.by_key)} keys accepted, states {dict(posts.states)}; "
        f"{posts.retries} retried POSTs, {posts.retry_mismatches} answered another outbound_id"
    )
    lines.append(
        f"wa.outbound: {outbound['manual_on_topic']} manual messages for "
        f"{outbound['accepted_posts']} accepted posts; missing {outbound['missing']}, "
        f"duplicates {outbound['duplicates']}, stray {outbound['stray']}: "
        + ("exactly once" if outbound["exactly_once"] else "PROBLEMS (see JSON)")
    )
    lines += problems_lines("API", problems)
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    unexpected = sum(n for status, n in statuses.items() if status not in (200, 202))
    ok = unexpected == 0 and outbound["exactly_once"] and posts.retry_mismatches == 0
    lines.append(
        f"status codes: {dict(sorted(statuses.items()))}; 5xx {server_errors}; "
        + ("OK" if ok else "FAILED")
    )
    emit(
        "api_load: the operator API under load",
        lines,
        {
            "database": args.database,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "chats": args.chats,
            "history": filled,
            "history_rows_expected": expected,
            "phases": figures_phases,
            "posts": {
                "accepted": len(posts.by_key),
                "states": dict(posts.states),
                "retries": posts.retries,
                "retry_mismatches": posts.retry_mismatches,
            },
            "outbound": outbound,
            "status": {str(k): v for k, v in sorted(statuses.items())},
            "api_log": problems,
            "machine": machine(),
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
