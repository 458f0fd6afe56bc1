"""The archive agent's rows per second on a backlog, into SQLite and into PostgreSQL.

``--records`` records (100,000 by default) in the mix a conversation writes are produced up
front to the seven topics the archive reads, each unit of a conversation being one inbound
message, its turn, one LLM call, one reply and two delivery receipts (sent, then read), with
a guard decision every 20th unit and a gateway event every 50th. Then, for each database,
the archive (``agents.archive.Archiver`` with the store's ``StoreWriter``, the same code the
worker runs, in this process) reads the backlog with a fresh consumer group from offset 0
and writes it in transactions of ``--batch-size`` records, committing offsets after each.

Reported per database: records archived per second from the end of the first batch to the
end of the last (the headline; the group join before the first fetch is left out), the
table rows the run left in the store (chats, messages, turns, turn_messages, llm_calls,
decisions, gateway_events) and those per second over the same span. Every record must be
archived and the rows must match what the backlog holds, or the exit status is 1.

SQLite is a file in the work folder (WAL, synchronous=FULL: SQLite's defaults besides WAL);
PostgreSQL is a throwaway cluster from Debian's ``postgresql`` package with ``fsync=on``
(``--postgres-url`` uses a server you run instead).

    .venv/bin/python -m bench.archive --records 100000
    .venv/bin/python -m bench.archive --records 5000           # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.archive import ArchiveConfig, Archiver, Kind
from bench.common import (
    Bench,
    add_common_args,
    create_topics,
    emit,
    fast_producer,
    machine,
    run_main,
    say,
)
from pipeline.store.engine import shown
from pipeline.store.writer import StoreWriter
from pipeline.testing.postgres import throwaway_postgres
from pipeline.testing.store import snapshot
from schemas import (
    DeliveryReceipt,
    GatewayEvent,
    GuardDecision,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    Turn,
)
from schemas.decision import decision_id_for

ACCOUNT = "10000@c.us"
KINDS: dict[str, Kind] = {
    "inbound": "inbound",
    "turns": "turn",
    "llm_calls": "llm_call",
    "outbound": "outbound",
    "delivery": "delivery",
    "decisions": "decision",
    "events": "event",
}


class NoDeadLetters:
    async def send(self, key: Any, value: Any) -> None:
        raise AssertionError(f"a generated record was dead-lettered: {value.reason}")


def backlog(
    records: int, chats: int
) -> tuple[dict[str, list[tuple[bytes, bytes]]], dict[str, int]]:
    """Generated records by topic key, and the rows they must leave in each table."""
    topics: dict[str, list[tuple[bytes, bytes]]] = {name: [] for name in KINDS}
    rows = dict.fromkeys(
        ["chats", "messages", "turns", "turn_messages", "llm_calls", "decisions", "gateway_events"],
        0,
    )
    start = datetime.now(UTC) - timedelta(hours=1)
    total = 0
    unit = 0
    used_chats: set[str] = set()
    while total < records:
        chat = f"4917{unit % chats:08d}@c.us"
        key = chat.encode()
        at = start + timedelta(milliseconds=unit)
        m = InboundMessage(
            account_id=ACCOUNT,
            message_id=f"3EB0{uuid.uuid4().hex[:18].upper()}",
            chat_id=chat,
            sender_id=chat,
            from_me=False,
            is_group=False,
            body=f"question {unit} about opening hours and prices, please",
            type="chat",
            has_media=False,
            wa_timestamp=at,
            received_at=at,
        )
        turn_id = f"turn-{unit}-{uuid.uuid4().hex[:8]}"
        turn = Turn(
            turn_id=turn_id,
            chat_id=chat,
            account_id=ACCOUNT,
            sender_id=chat,
            seq=unit // chats,
            message_ids=[m.message_id],
            text=m.body,
            is_group=False,
            first_received_at=at,
            last_received_at=at,
            trace_id=m.trace_id,
        )
        call = LLMCall(
            call_id=f"{turn_id}-1",
            turn_id=turn_id,
            chat_id=chat,
            model="gpt-4o-mini",
            base_url="http://127.0.0.1:1/v1",
            status="ok",
            prompt_tokens=420,
            completion_tokens=60,
            total_tokens=480,
            latency_ms=812.5,
            http_status=200,
            trace_id=m.trace_id,
        )
        reply = OutboundMessage(
            outbound_id=f"{turn_id}-0",
            chat_id=chat,
            account_id=ACCOUNT,
            text="We are open from 9 to 18 on weekdays; prices are on the website.",
            turn_id=turn_id,
            trace_id=m.trace_id,
        )
        unit_records: list[tuple[str, Any]] = [
            ("inbound", m),
            ("turns", turn),
            ("llm_calls", call),
            ("outbound", reply),
        ]
        for status, after in (("sent", 1), ("read", 5)):
            receipt = DeliveryReceipt(
                outbound_id=reply.outbound_id,
                chat_id=chat,
                account_id=ACCOUNT,
                status=status,
                wa_message_id=f"true_{chat}_3EB0{unit}",
                at=at + timedelta(seconds=after),
                trace_id=m.trace_id,
            )
            unit_records.append(("delivery", receipt))
        if unit % 20 == 0:
            decision = GuardDecision(
                decision_id=decision_id_for(ACCOUNT, chat, m.message_id, "rate_limited_chat"),
                account_id=ACCOUNT,
                chat_id=chat,
                sender_id=chat,
                message_id=m.message_id,
                type="chat",
                reason="rate_limited_chat",
                received_at=at,
                trace_id=m.trace_id,
            )
            unit_records.append(("decisions", decision))
            rows["decisions"] += 1
        if unit % 50 == 0:
            event = GatewayEvent(
                gateway="main", account_id=ACCOUNT, kind="state", state="ready", at=at
            )
            unit_records.append(("events", event))
            rows["gateway_events"] += 1
        unit_records = unit_records[: records - total]
        for topic, record in unit_records:
            topics[topic].append((key, record.model_dump_json().encode()))
        kinds = {topic for topic, _ in unit_records}
        rows["messages"] += ("inbound" in kinds) + ("outbound" in kinds or "delivery" in kinds)
        rows["turns"] += "turns" in kinds
        rows["turn_messages"] += "turns" in kinds
        rows["llm_calls"] += "llm_calls" in kinds
        if "inbound" in kinds or "outbound" in kinds:
            used_chats.add(chat)
        total += len(unit_records)
        unit += 1
    rows["chats"] = len(used_chats)
    return topics, rows


async def produce(bootstrap: str, names: dict[str, str], topics: dict[str, list[Any]]) -> float:
    producer = fast_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        for topic, records in topics.items():
            for key, value in records:
                await producer.send(names[topic], key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def archive_into(
    url: str, bootstrap: str, names: dict[str, str], records: int, batch: int, timeout: float
) -> dict[str, Any]:
    """Archive the whole backlog into ``url`` with a fresh consumer group; the figures."""
    writer = StoreWriter(url)
    await writer.prepare()
    archiver = Archiver(
        ArchiveConfig(
            bootstrap_servers=[bootstrap],
            topics={names[topic]: kind for topic, kind in KINDS.items()},
            group=f"bench-archive-{uuid.uuid4().hex[:8]}",
            batch_size=batch,
        ),
        writer,
        NoDeadLetters(),
    )
    task = asyncio.create_task(archiver.run())
    started = time.perf_counter()
    first_at: float | None = None
    first_count = 0
    deadline = started + timeout
    try:
        while archiver.archived < records:
            if task.done():
                task.result()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{archiver.archived} of {records} archived after {timeout}s")
            if first_at is None and archiver.archived:
                first_at, first_count = time.perf_counter(), archiver.archived
            await asyncio.sleep(0.005)
        done = time.perf_counter()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()
    tables = await snapshot(url)
    span = done - (first_at or started)
    rows = {name: len(found) for name, found in tables.items()}
    return {
        "records": archiver.archived,
        "records_per_s": round((archiver.archived - first_count) / span, 1),
        "seconds": round(span, 2),
        "seconds_with_group_join": round(done - started, 2),
        "rows": rows,
        "rows_total": sum(rows.values()),
        "rows_per_s": round(sum(rows.values()) * (1 - first_count / records) / span, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="backlog size (%(default)s)")
    parser.add_argument("--chats", type=int, default=1000, help="chats in it (%(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="WABOT_ARCHIVE_BATCH_SIZE (%(default)s)"
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="which, comma-separated (%(default)s)",
    )
    parser.add_argument("--postgres-url", help="a PostgreSQL server to use (maintenance db)")
    parser.add_argument(
        "--timeout", type=float, default=900, help="give up after this many s (%(default)s)"
    )
    add_common_args(parser)
    args = parser.parse_args()
    args.profile_worker = None
    with Bench(args, "archive") as bench:
        bootstrap = bench.start_broker()
        names = {topic: bench.topics[topic] for topic in KINDS}
        say(f"generating {args.records} records over {args.chats} chats")
        topics, expected = backlog(args.records, args.chats)
        asyncio.run(create_topics(bootstrap, list(names.values()), args.partitions))
        seconds = asyncio.run(produce(bootstrap, names, topics))
        say(f"produced {args.records} records in {seconds:.1f}s")
        results: dict[str, Any] = {}
        for kind in args.databases.split(","):
            with contextlib.ExitStack() as stack:
                if kind == "sqlite":
                    url = f"sqlite+aiosqlite:///{bench.workdir / 'archive.db'}"
                elif args.postgres_url:
                    url = args.postgres_url
                else:
                    server = stack.enter_context(throwaway_postgres(fsync=True))
                    url = server.create_database()
                say(f"archiving into {kind} at {shown(url)}")
                result = asyncio.run(
                    archive_into(url, bootstrap, names, args.records, args.batch_size, args.timeout)
                )
                result["rows_as_expected"] = result["rows"] == expected
                results[kind] = result
                say(f"{kind}: {result['records_per_s']} records/s, {result['rows_per_s']} rows/s")
        lines = [
            f"backlog: {args.records} records over {args.chats} chats, "
            f"{args.partitions} partitions; batches of {args.batch_size} records",
            f"expected rows: {expected}",
        ]
        for kind, r in results.items():
            lines.append(
                f"{kind:>10}: {r['records_per_s']:>8} records/s, {r['rows_per_s']:>8} rows/s "
                f"({r['records']} records -> {r['rows_total']} rows in {r['seconds']} s; "
                f"{r['seconds_with_group_join']} s with the group join); rows as expected: "
                f"{r['rows_as_expected']}"
            )
        figures = {
            "records": args.records,
            "batch_size": args.batch_size,
            "partitions": args.partitions,
            "results": results,
            "machine": machine(),
        }
        emit("archive: rows per second on a backlog", lines, figures)
        ok = all(r["rows_as_expected"] and r["records"] == args.records for r in results.values())
        return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
