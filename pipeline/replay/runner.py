"""One replay run: namespace, input, a real worker, progress, results, cleanup.

A run reruns recorded ``wa.inbound`` traffic, with the recorded ``chat.control`` records of
its chats (operator pauses, resumes, chat and account profiles), through the same guard,
respond and apply_reply code as the live bot: it starts ``faust -A pipeline worker`` with
another app id (so another consumer group, other tables and changelogs, other internal
topics) and with every public topic it writes renamed into the run's namespace. Every name
of a run starts with ``{source app id}-replay-{run id}``, so the live bot's state, its
outbound topic and its browser are out of reach, and cleaning up is deleting that prefix.

Steps: find the selected messages and the controls of their chats; write the run folder's
record of that input and of the live side (its replies, turns and guard decisions for those
chats, for ``--context original`` and the report); start the worker (no gateway, bursts
closed by message time only); feed it the input in the recorded order of each partition
(:mod:`pipeline.replay.feed`: same partitions, keys, values and timestamps; a control once
everything before it is done); once every record is read, send each chat a flush tick so its
last burst closes; wait until every turn is answered and applied; read the results into the
run folder; write the report; stop the worker; delete the namespace unless ``--keep``.
Ctrl-C stops the worker and keeps everything for ``--resume`` or ``--cleanup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from pydantic import BaseModel, Field, ValidationError

from pipeline.broker import free_port
from pipeline.config.settings import (
    INTERNAL_TOPICS,
    ConfigError,
    Settings,
    env_name,
    load_settings,
    topic_keys,
)
from pipeline.replay.feed import GUARD_STATE_TABLE, Feeder, FeedTopics
from pipeline.replay.progress import Progress, records_done
from pipeline.replay.reasons import (
    CONTROLS_FILE,
    DECISIONS_FILES,
    MESSAGES_FILE,
    ORIGINAL_TURNS_FILE,
)
from pipeline.replay.records import (
    ControlInput,
    GroupWatch,
    delete_namespace,
    flush_bursts,
    partition_count,
    read_topic,
    recorded_controls,
    scan_selection,
)
from pipeline.replay.report.formatting import summary_line
from pipeline.replay.report.run_folder import (
    RESULT_FILES,
    RUN_FILE,
    TURNS_FILE,
    load_run,
    write_report,
)
from pipeline.replay.selection import Selection, SelectionError
from schemas import GuardDecision, LLMCall, LLMResult, Turn

log = logging.getLogger(__name__)

Context = Literal["original", "replayed"]

#: Settings a replay sets itself; ``--set`` may not change them.
NOT_OVERRIDABLE = frozenset(
    {"app_id", "broker_url", "data_dir", "web_port", "web_host", "topic_partitions"}
    | {"replay_mode", "replay_original_replies", "inbound_first_start", "commit_interval_s"}
)


class ReplayError(Exception):
    """A replay cannot start or go on; the message is the one line the user sees."""


class RunState(BaseModel):
    """``run.json``: what a run replays and how far it got (a superset of the report's
    ``RunInfo``, which reads the same file)."""

    run_id: str
    created_at: datetime
    source_app: str
    app_id: str
    selection: str
    context: Context
    overrides: dict[str, str] = Field(default_factory=dict)
    partitions: int
    chats: dict[str, int] = Field(default_factory=dict, description="chat id -> partition")
    selected: dict[str, Any] = Field(
        default_factory=dict, description="the Selection (Selection.as_dict), for --resume"
    )
    bounds: dict[int, tuple[int, int]] = Field(
        default_factory=dict,
        description="partition -> offsets [start, end) of the recorded wa.inbound read",
    )
    planned: dict[str, dict[int, int]] = Field(
        default_factory=dict,
        description="records to feed: 'inbound' and 'control' -> partition -> records",
    )
    status: Literal["copying", "running", "interrupted", "failed", "done"] = "copying"
    namespace_deleted: bool = False
    counts: dict[str, Any] = Field(default_factory=dict)
    run_seconds: float | None = Field(None, description="worker start to the last reply applied")


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (setting names as in Settings, any case; ``VALUE`` ``@path``
    reads a file, for a system prompt) -> {field name: value}. Checks each value as the
    worker will (one line naming the variable on error); raises ReplayError."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        field = name.strip().lower().removeprefix("wabot_")
        if not sep or not field:
            raise ReplayError(f"--set {pair!r}: use NAME=VALUE, e.g. --set llm_model=gpt-4o")
        if field not in Settings.model_fields:
            raise ReplayError(
                f"--set {pair!r}: no setting {field!r} (python -m pipeline.config.settings)"
            )
        if field in NOT_OVERRIDABLE or field.startswith(("topic_", "gateway_")):
            raise ReplayError(f"--set {pair!r}: {field} is set by the replay itself")
        if value.startswith("@"):
            try:
                value = Path(value[1:]).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ReplayError(f"--set {name}: cannot read {value[1:]}: {exc}") from None
        overrides[field] = value
    with _environ({env_name(k): v for k, v in overrides.items()}):
        try:
            load_settings()
        except ConfigError as exc:
            raise ReplayError(str(exc)) from None
    return overrides


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


async def check_source(settings: Settings) -> None:
    """Raise ReplayError when the broker does not answer or has no ``wa.inbound``."""
    try:
        await asyncio.wait_for(
            partition_count(settings.bootstrap_servers, settings.topic("inbound")), 30
        )
    except (KafkaConnectionError, OSError, TimeoutError) as exc:
        raise ReplayError(
            f"broker {', '.join(settings.bootstrap_servers)} not reachable ({exc or 'timeout'})"
        ) from None


def runs_folder(settings: Settings) -> Path:
    """Where run folders live: ``<WABOT_DATA_DIR>/replays``."""
    return settings.data_dir / "replays"


class ReplayRun:
    """A run folder and the namespace it names. Build with :meth:`create` or :meth:`load`."""

    def __init__(self, settings: Settings, folder: Path, state: RunState) -> None:
        self.settings = settings
        self.folder = folder
        self.state = state
        self.worker: subprocess.Popen[bytes] | None = None
        self.web_port = 0

    # -- the run folder ------------------------------------------------------------
    @classmethod
    def load(cls, settings: Settings, run_id: str) -> ReplayRun:
        """The run ``run_id`` (a folder under :func:`runs_folder`, or a path)."""
        folder = Path(run_id) if Path(run_id).is_dir() else runs_folder(settings) / run_id
        try:
            state = RunState.model_validate_json((folder / RUN_FILE).read_text())
        except (OSError, ValidationError):
            raise ReplayError(f"no replay run {run_id!r} in {runs_folder(settings)}") from None
        return cls(settings, folder, state)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        selection: Selection,
        context: Context,
        overrides: dict[str, str],
        source_app: str,
    ) -> ReplayRun:
        """A new run id and folder; nothing on Kafka yet."""
        now = datetime.now(UTC)
        run_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        state = RunState(
            run_id=run_id,
            created_at=now,
            source_app=source_app,
            app_id=f"{source_app}-replay-{run_id}",
            selection=selection.describe(),
            context=context,
            overrides=overrides,
            partitions=0,
        )
        folder = runs_folder(settings) / run_id
        folder.mkdir(parents=True)
        run = cls(settings, folder, state)
        run.save()
        return run

    def save(self) -> None:
        (self.folder / RUN_FILE).write_text(self.state.model_dump_json(indent=2) + "\n")

    # -- names -----------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Every topic of the run starts with this (Faust's changelogs too)."""
        return f"{self.state.app_id}-"

    def topic(self, key: str) -> str:
        """The run's name of topic ``key``: what the replay worker's Settings.topic gives."""
        name: str = getattr(self.settings, f"topic_{key}")
        return f"{self.prefix}{name}"

    def worker_env(self) -> dict[str, str]:
        """The environment of the run's worker: the live settings, the overrides, and the
        namespace (app id, every public topic renamed, no gateway, no operator API, replay
        mode, which archives nothing)."""
        s = self.settings
        env = {**os.environ, **{env_name(k): v for k, v in self.state.overrides.items()}}
        for key in topic_keys():
            if key not in INTERNAL_TOPICS:  # those carry the run's app id already
                env[env_name(f"topic_{key}")] = self.topic(key)
        env.update(
            {
                "WABOT_APP_ID": self.state.app_id,
                "WABOT_TOPIC_PARTITIONS": str(self.state.partitions),
                "WABOT_DATA_DIR": str(self.folder / "worker"),
                "WABOT_WEB_PORT": str(self.web_port),
                "WABOT_REPLAY_MODE": "true",
                "WABOT_INBOUND_FIRST_START": "earliest",
                "WABOT_COMMIT_INTERVAL_S": "0.5",
                "WABOT_GATEWAY_IN_WORKER": "false",
                "WABOT_GATEWAY_LOOKALIKE": "false",
                # `make dev`'s API-in-worker would take the live API's port.
                "WABOT_API_IN_WORKER": "false",
                "WABOT_BROKER_URL": s.broker_url,
            }
        )
        if self.state.context == "original":
            env["WABOT_REPLAY_ORIGINAL_REPLIES"] = str(self.folder / "original.jsonl")
        else:
            env.pop("WABOT_REPLAY_ORIGINAL_REPLIES", None)
        return env

    # -- preparing -----------------------------------------------------------------
    async def prepare(self, selection: Selection) -> tuple[int, int]:
        """Find the selection's messages and the recorded controls of its chats, create the
        run's inbound and control topics, and write the run folder's record of the input
        and of the live side (replies, turns, decisions); return (messages, controls) to
        feed. Nothing is fed yet (see :mod:`pipeline.replay.feed`). Raises SelectionError,
        ReplayError."""
        s = self.settings
        bootstrap = s.bootstrap_servers
        source = s.topic("inbound")
        self.state.partitions = await partition_count(bootstrap, source)
        for key in ("inbound", "control"):
            await _create_topic(bootstrap, self.topic(key), self.state.partitions, s)
        selected = await scan_selection(bootstrap, source, selection)
        until_ms = None if selection.until is None else int(selection.until.timestamp() * 1000)
        controls = await recorded_controls(bootstrap, s.topic("control"), selected, until_ms)
        self.state.chats = selected.chats
        self.state.selected = selection.as_dict()
        self.state.bounds = selected.bounds
        planned_controls: dict[int, int] = {}
        for control in controls:
            planned_controls[control.partition] = planned_controls.get(control.partition, 0) + 1
        self.state.planned = {"inbound": dict(selected.counts), "control": planned_controls}
        self.state.counts["inbound_records"] = selected.total
        self.state.counts["controls"] = len(controls)
        _write_lines(self.folder / MESSAGES_FILE, (json.dumps(m) for m in selected.messages))
        _write_lines(self.folder / CONTROLS_FILE, (c.to_json() for c in controls))
        # The live bot's side of these chats, from a little before the first record (a
        # turn's reply is produced after its messages) to now.
        since = (selected.first_ms or 0) - 60_000
        source_app = self.state.source_app
        live: list[tuple[str, str, type[LLMResult] | type[Turn] | type[GuardDecision], str]] = [
            (
                RESULT_FILES["original"],
                f"{source_app}-{s.topic_llm_results}",
                LLMResult,
                "original_results",
            ),
            (ORIGINAL_TURNS_FILE, f"{source_app}-{s.topic_turns}", Turn, "original_turns"),
            (
                DECISIONS_FILES["original"],
                s.topic("decisions"),
                GuardDecision,
                "original_decisions",
            ),
        ]
        for name, topic, model, counted in live:
            lines = []
            for record in await read_topic(bootstrap, topic, since):
                with contextlib.suppress(ValidationError):
                    value = model.model_validate_json(record.value)
                    turn = value.turn if isinstance(value, LLMResult) else value
                    if turn.chat_id in selected.chats:
                        lines.append(value.model_dump_json())
            _write_lines(self.folder / name, lines)
            self.state.counts[counted] = len(lines)
        self.state.status = "running"
        self.save()
        return selected.total, len(controls)

    def feeder(self) -> Feeder:
        """The run's :class:`Feeder` (after :meth:`prepare`, also when resuming)."""
        try:
            selection = Selection.from_dict(self.state.selected)
            lines = (self.folder / CONTROLS_FILE).read_text(encoding="utf-8").splitlines()
            controls = [ControlInput.from_json(line) for line in lines if line.strip()]
        except (OSError, SelectionError, ValueError, KeyError) as exc:
            raise ReplayError(f"run {self.state.run_id} has no readable input: {exc}") from None
        topics = FeedTopics(
            source=self.settings.topic("inbound"),
            inbound=self.topic("inbound"),
            control=self.topic("control"),
            ticks=self.topic("guard_ticks"),
            turns=self.topic("turns"),
            guard_state=f"{self.state.app_id}-{GUARD_STATE_TABLE}-changelog",
        )
        return Feeder(
            self.settings.bootstrap_servers,
            topics,
            selection,
            self.state.bounds,
            controls,
            self.state.app_id,
        )

    # -- running -----------------------------------------------------------------
    def start_worker(self) -> None:
        """Start ``faust -A pipeline worker`` for the run; its log is ``worker.log``."""
        self.web_port = free_port()
        faust = shutil.which("faust") or str(Path(sys.executable).with_name("faust"))
        with (self.folder / "worker.log").open("ab") as out:
            self.worker = subprocess.Popen(
                [faust, "-A", "pipeline", "worker"],
                env=self.worker_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the command, which stops it
            )

    def stop_worker(self, timeout: float = 40.0) -> None:
        """SIGTERM the worker and wait; SIGKILL it after ``timeout`` seconds."""
        worker, self.worker = self.worker, None
        if worker is None or worker.poll() is not None:
            return
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)

    def worker_log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = (self.folder / "worker.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    async def watch(
        self, progress: Progress, stop: asyncio.Event, stall_timeout_s: float
    ) -> Literal["done", "interrupted"]:
        """Feed the run's input and follow its consumer group until every record is read
        and every turn answered and applied. Raises ReplayError when the worker dies or
        nothing moves for ``stall_timeout_s``."""
        feeder = self.feeder()
        watch = GroupWatch(self.settings.bootstrap_servers, self.state.app_id)
        await watch.start()
        feeding = asyncio.create_task(feeder.run())
        planned = {
            TopicPartition(self.topic(key), int(partition)): records
            for key in ("inbound", "control")
            for partition, records in self.state.planned.get(key, {}).items()
        }
        keys = ("inbound", "control", "guard_ticks", "turns", "llm_results")
        chain = [self.topic(k) for k in keys]
        flushed = False
        settled = 0
        last_move, last_seen = time.monotonic(), (-1, -1, -1)
        try:
            while True:
                if stop.is_set():
                    return "interrupted"
                if self.worker is not None and self.worker.poll() is not None:
                    raise ReplayError(
                        f"the replay worker exited with {self.worker.returncode}; "
                        f"see {self.folder / 'worker.log'}:\n{self.worker_log_tail()}"
                    )
                if feeding.done():
                    feeding.result()  # the feeder's error, if it had one
                done, total = records_done(planned, await watch.committed(planned))
                applied, _ = await watch.lag([self.topic("llm_results")])
                _, turns = await watch.lag([self.topic("turns")])
                progress.update(done, total, answered=applied, turns=turns)
                if feeding.done() and done >= total and not flushed:
                    await flush_bursts(
                        self.settings.bootstrap_servers, self.topic("guard_ticks"), self.state.chats
                    )
                    flushed = True
                if flushed:
                    committed, ends = await watch.lag(chain)
                    settled = settled + 1 if committed >= ends else 0
                    if settled >= 3:
                        return "done"
                seen = (done, applied, turns)
                if seen != last_seen:
                    last_move, last_seen = time.monotonic(), seen
                elif time.monotonic() - last_move > stall_timeout_s:
                    raise ReplayError(
                        f"no progress for {stall_timeout_s:g}s ({done}/{total} records, "
                        f"{applied}/{turns} turns answered); see {self.folder / 'worker.log'}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeding
            await watch.stop()

    # -- results -------------------------------------------------------------------
    async def collect(self) -> None:
        """Write the run's turns, replies and guard decisions to the folder and count dead
        letters and skipped turns (``run.json``)."""
        bootstrap = self.settings.bootstrap_servers
        turns = await read_topic(bootstrap, self.topic("turns"))
        results = await read_topic(bootstrap, self.topic("llm_results"))
        decisions = await read_topic(bootstrap, self.topic("decisions"))
        for name, records in (
            (TURNS_FILE, turns),
            (RESULT_FILES["replayed"], results),
            (DECISIONS_FILES["replayed"], decisions),
        ):
            with (self.folder / name).open("w", encoding="utf-8") as out:
                for record in records:
                    out.write(record.value.decode() + "\n")
        skipped: Counter[str] = Counter()
        for record in await read_topic(bootstrap, self.topic("llm_calls")):
            with contextlib.suppress(ValidationError):
                call = LLMCall.model_validate_json(record.value)
                if call.status == "skipped" and call.decision:
                    skipped[call.decision] += 1
        self.state.counts["dead_letters"] = len(await read_topic(bootstrap, self.topic("dlq")))
        self.state.counts["skipped"] = dict(skipped)
        self.state.counts["turns"] = len(turns)
        self.save()

    def report(self) -> tuple[Path, Path, str]:
        """Write report.md and report.html; return their paths and the summary line."""
        md, html = write_report(self.folder, self.settings.llm_prices or None)
        return md, html, summary_line(load_run(self.folder))

    async def cleanup(self) -> list[str]:
        """Delete the run's topics, consumer group and worker store; keep the folder's
        files (run.json, results, report). Returns the deleted topics."""
        deleted = await delete_namespace(
            self.settings.bootstrap_servers, self.prefix, self.state.app_id
        )
        shutil.rmtree(self.folder / "worker", ignore_errors=True)
        self.state.namespace_deleted = True
        self.save()
        return deleted


def selected_line(run_id: str, messages: int, controls: int, chats: int) -> str:
    """The line a run starts with. It counts records, messages and controls together, the
    unit of the progress bar that follows (``Progress``, :func:`records_done`)."""
    return (
        f"replay {run_id}: {messages + controls:,} records ({messages:,} messages, "
        f"{controls:,} controls) of {chats:,} chats to replay, each chat in its recorded order"
    )


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")


async def _create_topic(bootstrap: list[str], name: str, partitions: int, s: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=s.topic_replication_factor,
                    topic_configs={"retention.ms": str(round(s.topic_retention_days * 86_400_000))},
                )
            ]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def run_replay(
    run: ReplayRun,
    *,
    selection: Selection | None,
    keep: bool,
    stall_timeout_s: float,
    echo: Callable[[str], None],
    progress: Progress,
) -> int:
    """Drive ``run`` to its end (``selection`` is None when resuming); return the exit code:
    0 done, 130 interrupted (Ctrl-C; the namespace is kept). Raises ReplayError,
    SelectionError."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            if selection is not None:
                messages, controls = await run.prepare(selection)
                echo(selected_line(run.state.run_id, messages, controls, len(run.state.chats)))
            run.state.status = "running"
            run.save()
            run.start_worker()
            started = time.monotonic()
            outcome = await run.watch(progress, stop, stall_timeout_s)
            run.state.run_seconds = round(time.monotonic() - started, 2)
        except (KafkaConnectionError, OSError) as exc:
            raise ReplayError(
                f"broker {', '.join(run.settings.bootstrap_servers)} not reachable ({exc})"
            ) from None
        finally:
            progress.finish()
        if outcome == "interrupted":
            run.stop_worker()
            run.state.status = "interrupted"
            run.save()
            echo(
                f"replay {run.state.run_id} interrupted; go on with "
                f"`faust -A pipeline replay --resume {run.state.run_id}` or remove it with "
                f"`faust -A pipeline replay --cleanup {run.state.run_id}`"
            )
            return 130
        await run.collect()
        run.stop_worker()
        run.state.status = "done"
        run.save()
        md, html, summary = run.report()
        seconds, turns = run.state.run_seconds or 0.0, int(run.state.counts["turns"])
        echo(summary)
        echo(
            f"{turns} turns replayed in {seconds:.1f}s from the worker's start "
            f"({turns / max(seconds, 0.001):.1f} turns/s)"
        )
        echo(f"report: {html}\n        {md}")
        if keep:
            echo(f"kept: topics {run.prefix}* and consumer group {run.state.app_id}")
        else:
            await run.cleanup()
        return 0
    except BaseException:
        run.stop_worker()
        if run.state.status == "copying":
            # Nothing ran yet (a selection that matches nothing, say): leave no trace.
            with contextlib.suppress(Exception):
                await run.cleanup()
            shutil.rmtree(run.folder, ignore_errors=True)
        elif run.state.status not in ("done", "interrupted"):
            run.state.status = "failed"
            run.save()
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = [
    "ReplayError",
    "ReplayRun",
    "RunState",
    "SelectionError",
    "check_source",
    "parse_overrides",
    "run_replay",
    "runs_folder",
]
