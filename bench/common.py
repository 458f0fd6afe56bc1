"""What every benchmark shares: a broker, the LLM stand-in, workers, a producer, a collector.

Everything a benchmark starts (Apache Kafka, the stand-in, workers) runs as a child process
and is stopped by its PID when the benchmark ends, also on Ctrl-C, SIGTERM or an exception.
Progress goes to stderr; stdout carries only the results block and, as its last line, one
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.broker import KafkaBroker, free_port
from pipeline.config.settings import Settings, topic_keys
from pipeline.testing.workers import WorkerProcess
from schemas import InboundMessage

REPO = Path(__file__).resolve().parent.parent
#: The ``faust`` command of this interpreter's environment.
FAUST = str(Path(sys.executable).with_name("faust"))
ACCOUNT = "10000@c.us"


def run_main(main: Callable[[], int]) -> None:
    """``sys.exit(main())``, with Ctrl-C reported in one line (cleanup ran in ``Bench``)."""
    try:
        code = main()
    except KeyboardInterrupt:
        say("interrupted; every process this run started was stopped")
        code = 130
    sys.exit(code)


def say(message: str) -> None:
    """A progress line on stderr (stdout is for results)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("environment")
    group.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="use this running Kafka broker; default: start Apache Kafka for this run",
    )
    group.add_argument(
        "--partitions", type=int, default=8, help="WABOT_TOPIC_PARTITIONS (default: %(default)s)"
    )
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="pipeline workers in the one consumer group, each its own process (default: "
        "%(default)s); more than the machine's cores only share them",
    )
    group.add_argument(
        "--archive",
        choices=["worker", "process", "off"],
        default="worker",
        help="where the archive runs: in each worker (the default setting), in a process of "
        "its own beside them (`faust -A pipeline archive`, its CPU reported as archive), or "
        "nowhere (default: %(default)s)",
    )
    group.add_argument(
        "--kafka-heap", default="1g", help="heap of the started broker (default: %(default)s)"
    )
    group.add_argument("--workdir", type=Path, help="logs and broker data (default: a temp dir)")
    group.add_argument(
        "--keep-workdir", action="store_true", help="keep logs and broker data after the run"
    )
    group.add_argument(
        "--profile-worker",
        type=Path,
        metavar="FILE",
        help="run the pipeline worker under cProfile and write its stats to FILE (slower)",
    )
    group.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="give up when no reply arrived for this many seconds (default: %(default)s)",
    )
    group.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="keep reading this long after the last expected reply, to catch duplicates "
        "(default: %(default)s)",
    )


def chat_id(index: int) -> str:
    """A canonical 1:1 chat id, distinct for every index below 10**9."""
    return f"4917{index:09d}@c.us"


def inbound_value(chat: str, body: str, message_id: str) -> bytes:
    """The serialized InboundMessage the gateway would produce (as tests/conversation.py)."""
    now = datetime.now(UTC)
    return (
        InboundMessage(
            account_id=ACCOUNT,
            message_id=message_id,
            chat_id=chat,
            sender_id=chat,
            from_me=False,
            is_group=False,
            body=body,
            type="chat",
            has_media=False,
            wa_timestamp=now,
        )
        .model_dump_json()
        .encode()
    )


def round_robin_turns(
    run: str, chats: int, turns: int, first_chat: int = 0
) -> list[tuple[bytes, bytes]]:
    """``turns`` (key, value) records spread round-robin over ``chats``; bodies ``"<chat> <k>"``."""
    records = []
    for n in range(turns):
        chat = chat_id(first_chat + n % chats)
        k = n // chats
        records.append((chat.encode(), inbound_value(chat, f"{chat} {k}", f"3EB0{run}{n:010d}")))
    return records


def expected_per_chat(chats: int, turns: int, first_chat: int = 0) -> dict[str, int]:
    """How many turns each chat of :func:`round_robin_turns` received."""
    counts: dict[str, int] = {}
    for n in range(turns):
        chat = chat_id(first_chat + n % chats)
        counts[chat] = counts.get(chat, 0) + 1
    return counts


# --- processes ------------------------------------------------------------------------------


class Bench:
    """Owns every process and file of one benchmark run; ``with Bench(...)`` cleans them up."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.args = args
        self.name = name
        self.run = uuid.uuid4().hex[:8]
        self.workdir: Path = (
            args.workdir
            if args.workdir is not None
            else Path(tempfile.mkdtemp(prefix=f"wabot-bench-{name}-"))
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: KafkaBroker | None = None
        self.bootstrap: str = args.bootstrap or ""
        self.standins: list[subprocess.Popen[bytes]] = []
        self.workers: list[WorkerProcess] = []
        self.archives: list[subprocess.Popen[bytes]] = []
        self.topics = {name: f"b{self.run}.{name}" for name in topic_keys()}

    # -- context -----------------------------------------------------------------
    def __enter__(self) -> Bench:
        def on_term(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGHUP, on_term)
        # aiokafka logs each retried produce (e.g. NotLeaderForPartition on a topic just
        # created) as a warning; a record that is finally not delivered raises anyway.
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for worker in reversed(self.workers):
            self.stop_worker(worker)
        for proc in self.archives:
            _stop_process(proc)
        self.archives.clear()
        for proc in reversed(self.standins):
            _stop_process(proc)
        self.standins.clear()
        if self.broker is not None:
            say(f"stopping the Kafka broker at {self.bootstrap}")
            with contextlib.suppress(Exception):
                self.broker.stop()
            self.broker = None
        if self.args.keep_workdir:
            say(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- broker ------------------------------------------------------------------
    def cpu_pids(self, *workers: WorkerProcess) -> dict[str, int]:
        """The processes whose CPU a benchmark reports: the worker (``worker1``, ``worker2``...
        when there are several), the stand-in, the broker and this one."""
        pids = {
            "worker" if len(workers) == 1 else f"worker{n}": (
                worker.proc.pid if worker.proc is not None else -1
            )
            for n, worker in enumerate(workers, 1)
        }
        for n, proc in enumerate(self.archives, 1):
            pids["archive" if len(self.archives) == 1 else f"archive{n}"] = proc.pid
        if self.standins:
            pids["standin"] = self.standins[0].pid
        if self.broker is not None and (info := self.broker.info()) is not None:
            pids["broker"] = info.pid
        pids["bench"] = os.getpid()
        return pids

    def start_broker(self) -> str:
        if self.bootstrap:
            say(f"using the broker at {self.bootstrap}")
            return self.bootstrap
        settings = Settings()
        self.broker = KafkaBroker(
            "127.0.0.1",
            free_port(),
            self.workdir / "kafka",
            kafka_home=settings.kafka_home,
            version=settings.kafka_version,
            heap=self.args.kafka_heap,
            start_timeout=180,
        )
        say(f"starting Apache Kafka {settings.kafka_version} (heap {self.args.kafka_heap})")
        started = time.monotonic()
        info = asyncio.run(self.broker.start())
        self.bootstrap = info.bootstrap
        say(f"Kafka answers at {self.bootstrap} after {time.monotonic() - started:.1f}s")
        return self.bootstrap

    # -- LLM stand-in --------------------------------------------------------------
    def start_standin(self, latency: float) -> str:
        """The stand-in in its own process; returns its base URL once /v1/models answers."""
        port = free_port()
        log = self.workdir / f"standin-{len(self.standins) + 1}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline.dev.standin",
                    "--port",
                    str(port),
                    "--latency",
                    str(latency),
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.standins.append(proc)
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_http_ok(proc, f"{base_url}/models", log, "the LLM stand-in", 30.0)
        say(f"LLM stand-in (pid {proc.pid}, latency {latency}s) at {base_url}")
        return base_url

    # -- workers -------------------------------------------------------------------
    def pipeline_env(self, llm_base_url: str, **overrides: str) -> dict[str, str]:
        """The environment of a pipeline worker for this run (as tests/conversation.py)."""
        return {
            "WABOT_BROKER_URL": f"kafka://{self.bootstrap}",
            "WABOT_APP_ID": f"bench-{self.name}-{self.run}",
            "WABOT_DATA_DIR": str(self.workdir / "data"),
            "WABOT_TOPIC_PARTITIONS": str(self.args.partitions),
            "WABOT_LLM_BASE_URL": llm_base_url,
            "WABOT_BURST_QUIET_S": "0",
            "WABOT_RATE_CHAT_PER_MINUTE": "0",
            "WABOT_RATE_SENDER_PER_DAY": "0",
            "WABOT_DAILY_TOKEN_BUDGET": "0",
            "WABOT_LOOP_MAX_BOT_REPLIES": "0",
            # A big run takes longer than the default 15 minutes of "too old to answer".
            "WABOT_IGNORE_OLDER_THAN_S": "31536000",
            "WABOT_LOG_LEVEL": "WARNING",
            **{f"WABOT_TOPIC_{k.upper()}": v for k, v in self.topics.items()},
            "WABOT_ARCHIVE_ENABLED": str(getattr(self.args, "archive", "worker") == "worker"),
            **overrides,
        }

    def start_worker(
        self, env: dict[str, str], label: str = "worker", argv: list[str] | None = None
    ) -> WorkerProcess:
        """A worker process; returns once its /health says ready."""
        log = self.workdir / f"{label}-{len(self.workers) + 1}.log"
        if argv is None and self.args.profile_worker is not None:
            profile = str(self.args.profile_worker.resolve())
            argv = [sys.executable, "-m", "cProfile", "-o", profile, FAUST, "-A", "pipeline"]
            argv.append("worker")
            say(f"profiling the worker into {profile}")
        worker = BenchWorker(env, log, cwd=REPO, argv=argv)
        worker.start()
        self.workers.append(worker)
        assert worker.proc is not None
        say(f"{label} pid {worker.proc.pid} starting (log {log})")
        ready = worker.wait_ready(timeout=180)
        say(f"{label} ready after {ready:.1f}s")
        pipeline_worker = argv is None or "pipeline" in argv
        wanted = getattr(self.args, "archive", "worker") == "process"
        if pipeline_worker and wanted and not self.archives:
            self.start_archive(env)
        return worker

    def start_workers(self, env: dict[str, str], count: int) -> list[WorkerProcess]:
        """``count`` pipeline workers of one consumer group, each with its own data folder;
        returns once every one says ready after the last joined (the group rebalanced)."""
        workers = []
        for n in range(1, count + 1):
            own = {**env, "WABOT_DATA_DIR": str(self.workdir / f"data-{n}")} if count > 1 else env
            workers.append(self.start_worker(own))
        for worker in workers:  # the first ones rebalanced when the later ones joined
            worker.wait_ready(timeout=180)
        return workers

    def start_archive(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``faust -A pipeline archive`` with the workers' settings (``--archive process``)."""
        log = self.workdir / f"archive-{len(self.archives) + 1}.log"
        proc = spawn([FAUST, "-A", "pipeline", "archive"], env, log)
        self.archives.append(proc)
        say(f"archive process pid {proc.pid} (log {log})")
        return proc

    def stop_worker(self, worker: WorkerProcess) -> None:
        if worker.proc is not None and worker.proc.poll() is None:
            say(f"stopping worker pid {worker.proc.pid}")
            with contextlib.suppress(Exception):
                worker.stop(timeout=20)
        if worker in self.workers:
            self.workers.remove(worker)


class BenchWorker(WorkerProcess):
    """pipeline.testing.workers.WorkerProcess, with another command line when ``argv`` is given."""

    def __init__(
        self, env: dict[str, str], log: Path, cwd: Path, argv: list[str] | None = None
    ) -> None:
        super().__init__(env, log, cwd)
        self.argv = argv

    def start(self) -> BenchWorker:
        if self.argv is None:
            super().start()
            return self
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``argv`` in a process of its own, from the repository root, with ``env`` over this
    process's environment and its output appended to ``log``; the caller stops it."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_http_ok(
    proc: subprocess.Popen[bytes], url: str, log: Path, what: str, timeout: float
) -> None:
    """Poll ``url`` until it answers 200; RuntimeError (with the log's tail) when ``proc``
    exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer in {timeout:g}s: {_tail(log)}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # the process is gone
        return values
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0.0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU used by some processes between start() and stop(), against wall time."""

    pids: dict[str, int]
    _cpu: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self._cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._wall = time.perf_counter()

    def stop(self, units: int = 0) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        self.result = {"wall_s": round(wall, 3)}
        for name, pid in self.pids.items():
            used = cpu_seconds(pid) - self._cpu[name]
            entry: dict[str, Any] = {
                "cpu_s": round(used, 2),
                "core_share": round(used / wall, 2) if wall > 0 else None,
            }
            if units:
                entry["cpu_ms_per_turn"] = round(used * 1000 / units, 2)
            self.result[name] = entry
        return self.result


def cpu_line(result: dict[str, Any]) -> str:
    """``worker 0.85 core (12.3 ms/turn), standin 0.05 core, ...`` over the measured phase."""
    parts = []
    for name, entry in result.items():
        if not isinstance(entry, dict):
            continue
        text = f"{name} {entry['core_share']} core"
        if "cpu_ms_per_turn" in entry:
            text += f" ({entry['cpu_ms_per_turn']} ms CPU/turn)"
        parts.append(text)
    return f"  CPU over {result.get('wall_s')}s: " + ", ".join(parts)


def log_problems(path: Path, sample: int = 8) -> dict[str, Any]:
    """WARNING/ERROR/CRITICAL/Traceback lines of a worker log: counts, kinds, the first few."""
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    lines: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            for level in ("CRITICAL", "ERROR", "WARNING", "Traceback"):
                if level in line:
                    counts[level] += 1
                    # The same message with other numbers is the same kind.
                    text = line.split(level, 1)[1].strip()
                    kinds[f"{level} " + re.sub(r"\d+", "N", text)[:160]] += 1
                    if len(lines) < sample:
                        lines.append(line[:400])
                    break
    return {
        "counts": dict(counts),
        "kinds": dict(kinds.most_common(10)),
        "first_lines": lines,
        "log": str(path),
    }


def merged_problems(problems: list[dict[str, Any]]) -> dict[str, Any]:
    """One :func:`log_problems` result for several workers' logs (counts and kinds summed)."""
    if len(problems) == 1:
        return problems[0]
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for one in problems:
        counts.update(one["counts"])
        kinds.update(one["kinds"])
    return {
        "counts": dict(counts),
        "kinds": dict(kinds.most_common(10)),
        "first_lines": [line for one in problems for line in one["first_lines"]][:8],
        "log": ", ".join(one["log"] for one in problems),
    }


# --- Kafka clients ----------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of ``topic`` ({} when it does not exist).

    The partitions come from subscribing, as the Collector does: ``consumer.topics()``
    fetches metadata without loading it into the client, so ``partitions_for_topic`` after
    it says None (which made an earlier ``topic_size`` count 0 records in every topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {}
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no partitions of {topic} assigned after 30s")
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def topic_size(bootstrap: str, topic: str) -> int:
    """Records in ``topic``: the sum of its end offsets (0 when it does not exist)."""
    return sum((await end_offsets(bootstrap, topic)).values())


def fast_producer(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
        max_request_size=2 * 1024 * 1024,
    )


@dataclass
class Produced:
    started: float
    sent: float
    flushed: float
    count: int

    @property
    def rate(self) -> float:
        return self.count / max(self.flushed - self.started, 1e-9)


async def produce_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> Produced:
    """Send pre-serialized records as fast as the client goes; flush; check every delivery."""
    producer = fast_producer(bootstrap)
    await producer.start()
    try:
        futures = []
        started = time.perf_counter()
        for key, value in records:
            futures.append(await producer.send(topic, value=value, key=key))
        sent = time.perf_counter()
        await producer.flush()
        flushed = time.perf_counter()
        failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} records were not delivered: {failed[0]!r}")
    finally:
        await producer.stop()
    return Produced(started, sent, flushed, len(records))


@dataclass
class Reply:
    """One outbound record, reduced to what the checks need."""

    at: float  # perf_counter() when the consumer got it
    outbound_id: str
    chat_id: str
    kind: str
    body: str | None  # the echoed last user message, None if the text is not an echo
    prompt_messages: int  # the stand-in's count of messages in the prompt, -1 if unknown


def parse_reply(at: float, record: dict[str, Any]) -> Reply:
    text = str(record.get("text", ""))
    tag, sep, body = text.partition("]: ")
    count = -1
    if sep and tag.startswith("echo["):
        with contextlib.suppress(ValueError):
            count = int(tag[5:].split("|", 1)[0])
    return Reply(
        at=at,
        outbound_id=str(record.get("outbound_id")),
        chat_id=str(record.get("chat_id")),
        kind=str(record.get("kind", "reply")),
        body=body if sep else None,
        prompt_messages=count,
    )


@dataclass
class Collector:
    """Reads an outbound topic from the start and keeps one Reply per distinct outbound_id."""

    bootstrap: str
    topic: str
    replies: list[Reply] = field(default_factory=list)
    duplicates: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    unreadable: int = 0
    last_at: float = 0.0
    _seen: set[str] = field(default_factory=set)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
        )
        await self._consumer.start()
        deadline = time.monotonic() + 30
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no partitions of {self.topic} assigned after 30s")
            await asyncio.sleep(0.05)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=10000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    try:
                        reply = parse_reply(now, json.loads(record.value))
                    except (ValueError, TypeError):
                        self.unreadable += 1
                        continue
                    if reply.outbound_id in self._seen:
                        self.duplicates += 1
                        if len(self.duplicate_ids) < 10:
                            self.duplicate_ids.append(reply.outbound_id)
                        continue
                    self._seen.add(reply.outbound_id)
                    self.replies.append(reply)
                    self.last_at = now

    async def wait_for(self, expected: int, stall_timeout: float, settle: float) -> bool:
        """Wait until ``expected`` distinct replies arrived (True) or none came for a while."""
        last_count, last_change = -1, time.monotonic()
        last_report = time.monotonic()
        complete = False
        while True:
            await asyncio.sleep(0.1)
            if self._task is not None and self._task.done():
                self._task.result()  # raises what stopped the consumer
            now = time.monotonic()
            count = len(self.replies)
            if count != last_count:
                last_count, last_change = count, now
            if count >= expected:
                complete = True
                break
            if now - last_change > stall_timeout:
                say(f"no new reply for {stall_timeout:.0f}s: giving up at {count}/{expected}")
                break
            if now - last_report >= 5:
                say(f"{count}/{expected} replies")
                last_report = now
        if settle > 0:
            await asyncio.sleep(settle)
        return complete

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


def check_replies(replies: list[Reply], expected: dict[str, int]) -> dict[str, Any]:
    """Order and completeness of echo replies to bodies ``"<chat> <k>"``.

    A chat is in order when the k of its replies, in topic order, are exactly 0..n-1.
    """
    per_chat: dict[str, list[int]] = {}
    unparsable: list[str] = []
    wrong_chat: list[str] = []
    kinds: Counter[str] = Counter()
    for reply in replies:
        kinds[reply.kind] += 1
        if reply.body is None or reply.chat_id not in expected:
            unparsable.append(reply.outbound_id)
            continue
        chat, _, k = reply.body.rpartition(" ")
        if chat != reply.chat_id:
            wrong_chat.append(reply.outbound_id)
        try:
            per_chat.setdefault(reply.chat_id, []).append(int(k))
        except ValueError:
            unparsable.append(reply.outbound_id)
    out_of_order: list[str] = []
    missing = extra = 0
    for chat, n in expected.items():
        got = per_chat.get(chat, [])
        if any(b < a for a, b in itertools.pairwise(got)):
            out_of_order.append(f"{chat}: {got[:30]}")
        wanted = set(range(n))
        have = set(got)
        missing += len(wanted - have)
        extra += len(have - wanted)
    return {
        "expected_turns": sum(expected.values()),
        "distinct_replies": len(replies),
        "missing_turns": missing,
        "unexpected_turns": extra,
        "chats_out_of_order": len(out_of_order),
        "out_of_order_examples": out_of_order[:5],
        "replies_naming_another_chat": len(wrong_chat),
        "unparsable_replies": len(unparsable),
        "unparsable_examples": unparsable[:5],
        "kinds": dict(kinds),
    }


def rates(replies: list[Reply], produced_at: float) -> dict[str, Any]:
    """Replies per second from the first reply to the last, and from the start of producing."""
    if not replies:
        return {"replies": 0}
    times = sorted(r.at for r in replies)
    first, last = times[0], times[-1]
    n = len(times)
    return {
        "replies": n,
        "first_reply_after_s": round(first - produced_at, 3),
        "last_reply_after_s": round(last - produced_at, 3),
        "per_s_first_to_last": round((n - 1) / (last - first), 2) if last > first else None,
        "per_s_from_produce": round(n / (last - produced_at), 2) if last > produced_at else None,
    }


def emit(title: str, lines: list[str], figures: dict[str, Any]) -> None:
    """The results block, then one JSON line with every figure (the last line of stdout)."""
    bar = "=" * max(len(title), 60)
    print(bar)
    print(title)
    print(bar)
    for line in lines:
        print(line)
    print(bar, flush=True)
    print(json.dumps(figures, separators=(",", ":"), default=str), flush=True)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0]}


def problems_lines(label: str, problems: dict[str, Any]) -> list[str]:
    counts = problems["counts"]
    if not counts:
        return [f"{label} log: no warnings or errors"]
    lines = [f"{label} log: {counts} ({problems['log']}); by kind:"]
    lines += [f"    {n} x {kind}" for kind, n in problems["kinds"].items()]
    return lines


def is_correct(check: dict[str, Any], duplicates: int, dlq: int | None = None) -> bool:
    """Every turn answered once, in its chat's order, naming its own chat; DLQ empty."""
    return (
        check["missing_turns"] == 0
        and check["chats_out_of_order"] == 0
        and check["unexpected_turns"] == 0
        and check["replies_naming_another_chat"] == 0
        and check["unparsable_replies"] == 0
        and duplicates == 0
        and not dlq
    )


def correctness_lines(check: dict[str, Any], duplicates: int, dlq: int | None = None) -> list[str]:
    ok = is_correct(check, duplicates, dlq)
    lines = [
        f"  replies: {check['distinct_replies']} distinct for {check['expected_turns']} turns; "
        f"missing {check['missing_turns']}, duplicates {duplicates}, "
        f"chats out of order {check['chats_out_of_order']}, kinds {check['kinds']}"
        + ("" if dlq is None else f", dead letters {dlq}"),
        f"  correctness: {'OK' if ok else 'PROBLEMS (see JSON)'}",
    ]
    for example in check["out_of_order_examples"]:
        lines.append(f"    out of order: {example}")
    if check["replies_naming_another_chat"] or check["unparsable_replies"]:
        lines.append(
            f"    replies naming another chat: {check['replies_naming_another_chat']}, "
            f"unparsable: {check['unparsable_replies']} {check['unparsable_examples']}"
        )
    return lines
