"""Builds the one Faust app: settings in, topics, tables, agents, views and commands wired.

``faust -A pipeline worker`` imports :mod:`pipeline`, whose ``app`` is made here.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust

import agents.analytics
import agents.apply_reply
import agents.guard
import agents.ping
import agents.respond
import tables
from agents.intake import Intake, Outstanding
from agents.progress import ProgressBoard
from agents.pseudonyms import Pseudonymizer
from pipeline.api.embedded import install_api
from pipeline.gateway.service import Gateway
from pipeline.gateway.wiring import install_gateway
from pipeline.llm import LLMClient
from pipeline.llm_standin import LLMStandin
from pipeline.logs import logging_config
from pipeline.metrics import guard_decision_counter, metric_prefix, setup_metrics
from pipeline.pipeline_metrics import MeteredTopic, PipelineMetrics, StoreLagWatch, pipeline_metrics
from pipeline.settings import Settings
from pipeline.topic_setup import TopicSpec, cluster_id, ensure_topics, is_tansu
from pipeline.topics import Topics, declare_topics, raw_source
from pipeline.transport import TunedTransport
from pipeline.web_auth import api_tokens, bearer_middleware
from schemas import ChatState, LLMResult

log = logging.getLogger(__name__)

#: Parsed windows kept (tables/values.py): the chats being answered now, read by respond
#: and apply_reply within about an LLM call of each other.
WINDOW_CACHE = 1024

#: RocksDB options of every table when WABOT_STORE=rocksdb://, in bytes (faust's
#: ``RocksDBOptions``; the names are RocksDB's). Faust opens a database per table and
#: partition and gives each one 64 MiB write buffers (up to 3) and a 2 GiB block cache:
#: with 8 partitions and a handful of busy tables, a bound of several GiB that a long-running
#: worker with many chats can reach. These cap each database at 8 MiB of memtables and an
#: 8 MiB cache; what does not fit is read from RocksDB's files.
ROCKSDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 4 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 << 20,
    "block_cache_compressed_size": 0,
}

#: When this process imported the app: the zero of the reported time to ready.
PROCESS_STARTED = time.monotonic()


class PipelineApp(faust.App):
    """faust.App that knows when it is ready: group joined and tables recovered."""

    settings: Settings
    topics_: Topics
    #: The pipeline's own metrics (pipeline/pipeline_metrics.py).
    metrics: PipelineMetrics
    ready_after: float | None = None
    #: None in the gateway's app, which calls no LLM.
    llm: LLMProxy | None = None
    standin: LLMStandin | None = None
    gateway: Gateway | None = None
    #: Called synchronously when a rebalance starts, before Faust flushes and commits.
    rebalance_hooks: list[Callable[[], None]]
    #: Topics a consumer group with no committed offset starts reading that many seconds
    #: back, not at the beginning (see pipeline/transport.py).
    recent_start: dict[str, float]
    #: Topics declared outside ``topics_`` (the gateway's lid pairs) that the app creates.
    extra_topics: list[Any]

    @property
    def is_ready(self) -> bool:
        return self.ready_after is not None and not self.rebalancing

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if is_tansu(await cluster_id(self.settings.bootstrap_servers)):
            # Tansu reports a partition's end offset as (base offset of its last batch) + 1,
            # so after a multi-record batch Faust's table recovery stops short and a table
            # loses its newest values. One record per batch keeps end offsets exact; it
            # costs throughput, which the dev broker can spare. (Apache Kafka is unaffected.)
            self.producer.max_batch_size = 1
            log.warning(
                "embedded Tansu broker detected: producing one record per batch "
                "(Tansu miscounts end offsets of multi-record batches)"
            )
        await ensure_topics(
            self.settings.bootstrap_servers, self.topic_specs(), self.settings.broker_start_timeout
        )
        if self.llm is not None:
            await self._start_llm(self.llm)

    async def _start_llm(self, llm: LLMProxy) -> None:
        s = self.settings
        urls = [s.llm_base_url, *s.llm_fallback_base_urls] if s.llm_base_url else []
        if not urls:
            self.standin = LLMStandin()
            urls = [await self.standin.start("127.0.0.1", 0)]
            log.warning(
                "no LLM configured (WABOT_LLM_BASE_URL is empty): replies come from the "
                "built-in stand-in at %s, which echoes the prompt; set WABOT_LLM_BASE_URL, "
                "WABOT_LLM_MODEL and WABOT_LLM_API_KEY for a real model",
                urls[0],
            )
        llm.client = LLMClient(
            urls,
            api_key=s.llm_api_key,
            model=s.llm_model,
            timeout_s=s.llm_timeout_s,
            max_tokens=s.llm_max_tokens,
            temperature=s.llm_temperature,
            retries=s.llm_retries,
            backoff_s=s.llm_backoff_s,
            backoff_max_s=s.llm_backoff_max_s,
            fallback_reply=s.llm_fallback_reply,
            max_message_chars=s.llm_max_message_chars,
        )
        log.info("LLM: model %s at %s", s.llm_model, ", ".join(urls))
        # One look at each endpoint, so a wrong URL or key shows at start, not as fallback
        # replies later; the worker starts anyway (the endpoint may come up after it).
        for url, problem in (await llm.client.check()).items():
            log.warning(
                "LLM endpoint %s does not answer GET /models (%s); turns get the fallback "
                "reply until it does",
                url,
                problem,
            )

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.llm is not None and self.llm.client is not None:
            await self.llm.client.close()
        if self.standin is not None:
            await self.standin.stop()

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the app reads or writes, and every table's changelog, with the
        configs they are created with: ``retention.ms`` from WABOT_INBOUND_RETENTION_DAYS
        (wa.inbound) or WABOT_TOPIC_RETENTION_DAYS, changelogs ``cleanup.policy=compact``."""
        s = self.settings
        replication = s.topic_replication_factor
        specs = []
        for topic in [*self.topics_.all(), *self.extra_topics]:
            name = topic.get_topic_name()
            # wa.inbound is what replays read, so it is kept longer than the rest.
            inbound = name == s.topic("inbound")
            days = s.inbound_retention_days if inbound else s.topic_retention_days
            specs.append(
                TopicSpec(
                    name,
                    topic.partitions or self.conf.topic_partitions,
                    replication,
                    {"retention.ms": str(round(days * 86_400_000))},
                )
            )
        for table in self.tables.values():
            specs.append(
                TopicSpec(
                    table.changelog_topic.get_topic_name(),
                    table.partitions or self.conf.topic_partitions,
                    replication,
                    {"cleanup.policy": "compact"},
                )
            )
        return specs

    def _new_transport(self) -> Any:
        return TunedTransport(self.conf.broker_consumer, self)

    def Table(self, name: str, **kwargs: Any) -> Any:
        """faust's ``App.Table``, with :data:`ROCKSDB_OPTIONS` for tables on RocksDB."""
        return super().Table(name, **self._store_options(kwargs))

    def GlobalTable(self, name: str, **kwargs: Any) -> Any:
        """faust's ``App.GlobalTable``, with :data:`ROCKSDB_OPTIONS` on RocksDB."""
        return super().GlobalTable(name, **self._store_options(kwargs))

    def _store_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if str(self.conf.store).startswith("rocksdb") and "options" not in kwargs:
            kwargs["options"] = dict(ROCKSDB_OPTIONS)  # faust pops keys: a copy each
        return kwargs

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        for hook in self.rebalance_hooks:
            hook()

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        if self.ready_after is None and self.rebalancing is False:
            self.ready_after = time.monotonic() - PROCESS_STARTED
            log.info(
                "worker ready in %.1fs (group joined, tables recovered) on %s, event loop %s",
                self.ready_after,
                self.settings.broker_url,
                type(self.loop).__module__.partition(".")[0],
            )


class PipelineWorker(faust.Worker):
    """faust.Worker whose log level comes from WABOT_LOG_LEVEL, not only from ``-l``,
    and whose stop always ends.

    Faust's terminal spinner raises the log handler to WARN when ``-l`` is not given,
    which would hide the "worker ready" line; our log lines are the progress report.

    Stopping flushes the producer and commits offsets; with the broker gone, Faust and
    aiokafka wait for it forever and Ctrl-C seemed to do nothing. A watchdog thread (it
    runs even when the event loop is stuck) ends the process ``shutdown_timeout_s`` after
    the first signal, and a second Ctrl-C ends it at once. Ending early is safe by design:
    anything not committed is replayed on restart and the sink skips what it already sent.
    """

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        _exit_if_ports_taken(app.settings, app.conf.web_port)
        api_tokens(app.settings)  # made now, so its file is there before the first request
        super().__init__(app, *args, **kwargs)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if self._signal_stop_time:
            _end_now(f"second {signum.name}: stopping without waiting for a clean shutdown")
        settings: Settings = self.app.settings  # type: ignore[attr-defined]
        watchdog = threading.Timer(
            settings.shutdown_timeout_s,
            _end_now,
            args=(
                f"the worker did not stop within {settings.shutdown_timeout_s:g}s "
                f"(is the broker at {', '.join(settings.bootstrap_servers)} reachable?); exiting "
                "without a clean shutdown: unfinished records are replayed on restart",
            ),
        )
        watchdog.daemon = True
        watchdog.start()
        super()._schedule_shutdown(signum)


def _exit_if_ports_taken(settings: Settings, web_port: int) -> None:
    """Exit 2 with one line when a port the worker must listen on is taken (another worker,
    say): Faust would die with a traceback from deep inside aiohttp."""
    name = "WABOT_WEB_PORT" if web_port == settings.web_port else "WABOT_GATEWAY_WEB_PORT"
    ports = [(web_port, name)]
    if settings.gateway_lookalike and settings.lookalike_port:
        ports.append((settings.lookalike_port, "WABOT_LOOKALIKE_PORT"))
    if settings.api_in_worker and web_port == settings.web_port:
        ports.append((settings.api_port, "WABOT_API_PORT"))
    for port, name in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.web_host, port))
            except OSError:
                print(
                    f"wabot: port {port} ({name}) on {settings.web_host} is in use; is another "
                    f"worker running? Stop it, or set {name} to a free port",
                    file=sys.stderr,
                )
                raise SystemExit(2) from None


def _end_now(reason: str) -> None:
    log.error("%s", reason)
    logging.shutdown()
    os._exit(1)


class LLMProxy:
    """Lets agents be wired before the LLM client exists (it starts with the worker)."""

    client: LLMClient | None = None
    metrics: PipelineMetrics | None = None

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        turn_id: str,
        chat_id: str,
        trace_id: str,
        model: str | None = None,
        cut_before: int = 0,
    ) -> Any:
        if self.client is None:
            raise RuntimeError("the LLM client is not started yet")
        completion = await self.client.complete(
            messages,
            turn_id=turn_id,
            chat_id=chat_id,
            trace_id=trace_id,
            model=model,
            cut_before=cut_before,
        )
        if self.metrics is not None:
            self.metrics.llm_calls(completion.calls)
        return completion


def create_app(settings: Settings) -> PipelineApp:
    """The pipeline's app (``faust -A pipeline worker``): guard, respond and the rest."""
    app = _new_app(settings, settings.app_id, settings.web_port, "worker")
    app.llm = LLMProxy()
    app.llm.metrics = app.metrics
    if settings.inbound_first_start == "recent":
        app.recent_start[settings.topic("inbound")] = settings.ignore_older_than_s
    _wire_agents(app, settings, app.llm)
    if settings.analytics_enabled:
        _wire_analytics(app, settings)
    if settings.archive_enabled and not settings.replay_mode:
        _wire_archive(app, settings)
    if settings.gateway_in_worker:
        app.gateway = install_gateway(app, settings)
    if settings.api_in_worker:
        install_api(app, settings)
    _views(app)
    return app


def create_gateway_app(settings: Settings) -> PipelineApp:
    """One account's gateway (``faust -A pipeline.gateway worker``): its own consumer group,
    so it reads every partition of wa.outbound whichever pipeline workers run."""
    name = f"{settings.app_id}-gateway-{settings.gateway_name}"
    app = _new_app(settings, name, settings.gateway_web_port, f"gateway-{settings.gateway_name}")
    app.gateway = install_gateway(app, settings)
    _views(app)
    return app


def _new_app(settings: Settings, app_id: str, web_port: int, datadir: str) -> PipelineApp:
    # Faust creates only the last level of its datadir.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = PipelineApp(
        app_id,
        broker=settings.broker_url,
        store=settings.store,
        datadir=str(settings.data_dir / datadir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        consumer_auto_offset_reset="earliest",
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=web_port,
        # Every path but /health (and /metrics, if public) needs a bearer token.
        web_application_options={"middlewares": [bearer_middleware(settings)]},
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_records=settings.consumer_max_poll_records,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        producer_linger=settings.producer_linger_ms / 1000,
        logging_config=logging_config(settings.log_level, settings.log_format),
        Worker=PipelineWorker,
        # Turns are acked when their reply is on Kafka, which may wait for the previous
        # reply of the chat to be applied by another agent: a rebalance must not wait
        # for that. Unacked turns of revoked partitions are replayed by their new owner.
        stream_wait_empty=False,
    )
    app.settings = settings
    app.rebalance_hooks = []
    app.recent_start = {}
    app.extra_topics = []
    app.topics_ = declare_topics(app, settings)
    monitor = setup_metrics(app, name_prefix=app_id.replace("-", "_"))
    app.metrics = pipeline_metrics(metric_prefix(settings.app_id))
    app.metrics.set_topics(dlq=settings.topic("dlq"), delivery=settings.topic("delivery"))
    monitor.count_records_in(app.metrics.record_in)
    return app


def _views(app: PipelineApp) -> None:
    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        ready = app.is_ready
        body: dict[str, Any] = {
            "ready": ready,
            "ready_after_s": app.ready_after,
            "app_id": app.conf.id,
        }
        if app.gateway is not None:
            body["gateway"] = app.gateway.status()
        return web.json(body, status=200 if ready else 503)


def _wire_agents(app: PipelineApp, settings: Settings, llm: LLMProxy) -> None:
    t = app.topics_
    n = settings.topic_partitions
    ping_counts = tables.ping_counts(app, n)
    out = app.metrics.sending  # a topic whose sends count as the agent's records out
    agents.ping.register(app, t.ping, out(t.pong, "ping"), ping_counts, worker=socket.gethostname())

    chats = tables.TypedTable(tables.chat_state_table(app, n), ChatState)
    windows = tables.TypedTable(
        tables.windows_table(app, n), tables.ConversationWindow, cache=WINDOW_CACHE
    )
    # Read by every worker, so both limits hold for the account (see tables/global_counts.py).
    token_usage = tables.GlobalCounts(tables.token_usage_table(app, n))
    sender_replies = tables.GlobalCounts(tables.sender_replies_table(app, n))
    for counts in (token_usage, sender_replies):
        app.task(_follower(counts, settings))
    progress = ProgressBoard()
    guard_ahead = Outstanding(
        Intake(
            app,
            settings.topic("inbound"),
            settings.respond_max_queued,
            held="turns made by the guard and not answered yet",
        )
    )

    agents.guard.register(
        app,
        # Operator controls (chat.control) join the same co-partitioned stream, so the guard
        # applies them to chat_state in stream context, in order with the chat's messages.
        inbound_and_ticks=raw_source(
            app,
            settings,
            settings.topic("inbound"),
            settings.topic("guard_ticks"),
            settings.topic("control"),
        ),
        ticks_topic_name=settings.topic("guard_ticks"),
        control_topic_name=settings.topic("control"),
        config=agents.guard.GuardConfig(
            burst_quiet_s=settings.burst_quiet_s,
            ignore_older_than_s=settings.ignore_older_than_s,
            takeover_pause_s=settings.takeover_pause_s,
            allow_list=frozenset(settings.allow_list),
            block_list=frozenset(settings.block_list),
            group_prefix=settings.group_prefix,
            dedupe_window=settings.dedupe_window,
            rate_chat_per_minute=settings.rate_chat_per_minute,
            rate_sender_per_day=settings.rate_sender_per_day,
            daily_token_budget=settings.daily_token_budget,
            loop_max_bot_replies=settings.loop_max_bot_replies,
            loop_quiet_reset_s=settings.loop_quiet_reset_s,
            limit_notice=settings.limit_notice,
            unreadable_notice=settings.unreadable_notice,
            unreadable_notice_enabled=settings.unreadable_notice_enabled,
            max_turn_chars=settings.llm_max_message_chars,
            replay=settings.replay_mode,
        ),
        tables=agents.guard.GuardTables(
            state=tables.TypedTable(tables.guard_state_table(app, n), tables.GuardState),
            chats=chats,
            counters=tables.TypedTable(tables.rate_counters_table(app, n), tables.Counter),
            token_usage=token_usage,
            sender_replies=sender_replies,
        ),
        topics=agents.guard.GuardTopics(
            # Each turn counts until respond is done with it: the guard stops reading
            # wa.inbound while too many wait (agents/intake.py).
            turns=MeteredTopic(out(t.turns, "guard"), guard_ahead.made, None),
            ticks=out(t.guard_ticks, "guard"),
            outbound=out(t.outbound, "guard"),
            llm_calls=out(t.llm_calls, "guard"),
            dlq=out(t.dlq, "guard"),
            decisions=out(t.decisions, "guard"),
        ),
        count_decision=guard_decision_counter(metric_prefix(settings.app_id)),
    )
    scheduler = agents.respond.ChatScheduler(
        agents.respond.RespondConfig(
            system_prompt=settings.system_prompt,
            max_in_flight=settings.respond_max_in_flight,
            max_reply_chars=settings.max_reply_chars,
            context_idle_expiry_s=settings.context_idle_expiry_s,
            previous_turn_timeout_s=settings.llm_timeout_s * (settings.llm_retries + 2),
        ),
        windows=windows,
        chats=chats,
        llm=llm,
        results=out(t.llm_results, "respond"),
        progress=progress,
        intake=Intake(app, settings.topic("turns"), settings.respond_max_queued),
        outstanding=guard_ahead,
    )
    turns = raw_source(app, settings, settings.topic("turns"))
    agents.respond.register(app, source=turns, dlq=out(t.dlq, "respond"), scheduler=scheduler)
    app.metrics.track_turns(lambda: scheduler.queued)
    app.rebalance_hooks.append(scheduler.revoke_all)
    agents.apply_reply.register(
        app,
        source=raw_source(app, settings, settings.topic("llm_results")),
        outbound=out(t.outbound, "apply_reply"),
        llm_calls=out(t.llm_calls, "apply_reply"),
        dlq=out(t.dlq, "apply_reply"),
        windows=windows,
        token_usage=token_usage,
        progress=progress,
        config=agents.apply_reply.WindowConfig(
            max_entries=settings.context_turns,
            token_budget=settings.context_token_budget,
            idle_expiry_s=settings.context_idle_expiry_s,
        ),
        original_replies=_original_replies(settings.replay_original_replies),
    )


def _original_replies(path: Path | None) -> dict[str, str] | None:
    """Turn id -> the reply the live bot sent, from a replay's ``original.jsonl``
    (LLMResult JSON lines), or None outside a replay with ``--context original``."""
    if path is None:
        return None
    replies = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                result = LLMResult.model_validate_json(line)
                replies[result.turn.turn_id] = result.reply
    log.info("context: %d recorded replies from %s", len(replies), path)
    return replies


def _follower(counts: tables.GlobalCounts, settings: Settings) -> Callable[[], Awaitable[None]]:
    async def follow() -> None:
        await counts.follow(settings.bootstrap_servers)

    return follow


def _wire_analytics(app: PipelineApp, settings: Settings) -> None:
    """The pseudonymized analytics.events topic, derived from the public topics."""
    key = settings.analytics_hmac_key.get_secret_value()
    if len(key.encode()) < 16:
        log.warning("WABOT_ANALYTICS_HMAC_KEY is short; use 32 random bytes or more")
    kinds: dict[str, agents.analytics.Kind] = {
        settings.topic("inbound"): "inbound",
        settings.topic("outbound"): "outbound",
        settings.topic("delivery"): "delivery",
        settings.topic("llm_calls"): "llm_call",
    }
    agents.analytics.register(
        app,
        source=raw_source(app, settings, *kinds),
        kinds=kinds,
        analytics=app.metrics.sending(app.topics_.analytics, "analytics"),
        dlq=app.metrics.sending(app.topics_.dlq, "analytics"),
        deriver=agents.analytics.Deriver(
            Pseudonymizer(key), include_text=settings.analytics_include_text
        ),
    )
    log.info(
        "analytics: pseudonymized events to %s (texts %s)",
        settings.topic("analytics"),
        "included" if settings.analytics_include_text else "left out",
    )


def _wire_archive(app: PipelineApp, settings: Settings) -> None:
    """The conversation store, filled from the topics by the archive (its own consumer group;
    the schema is upgraded first when behind). A replay's worker archives nothing."""
    from pipeline.store.wiring import archive_group, archive_topics, install_archive

    install_archive(app, settings)
    lag = StoreLagWatch(
        app.metrics, settings.bootstrap_servers, archive_group(settings), archive_topics(settings)
    )
    app.task(lag.run)
