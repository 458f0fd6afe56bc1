"""Builds the one Faust app: settings in, topics, tables, agents, views and commands wired.

``faust -A pipeline worker`` imports :mod:`pipeline`, whose ``app`` is made here
(:func:`create_app`); ``faust -A pipeline.gateway worker`` makes one account's gateway
(:func:`create_gateway_app`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import agents.analytics
import agents.apply_reply
import agents.guard.agent
import agents.guard.config
import agents.ping
import agents.respond
import tables
from agents.intake import Intake, Outstanding
from agents.progress import ProgressBoard
from agents.pseudonyms import Pseudonymizer
from pipeline.api.embedded import install_api
from pipeline.api.tokens import bearer_middleware
from pipeline.application.app import PipelineApp
from pipeline.application.worker import PipelineWorker
from pipeline.config.settings import Settings
from pipeline.config.stages import guard_config, respond_config, window_config
from pipeline.gateway.wiring import install_gateway
from pipeline.kafka.topics import declare_topics, raw_source
from pipeline.llm.proxy import LLMProxy
from pipeline.observability.faust_metrics import (
    guard_decision_counter,
    metric_prefix,
    setup_metrics,
)
from pipeline.observability.logs import logging_config
from pipeline.observability.pipeline_metrics import (
    MeteredTopic,
    StoreLagWatch,
    pipeline_metrics,
)
from schemas import ChatState, LLMResult

log = logging.getLogger(__name__)

#: Parsed windows kept (tables/values.py): the chats being answered now, read by respond
#: and apply_reply within about an LLM call of each other.
WINDOW_CACHE = 1024


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
        logging_config=logging_config(
            settings.log_level, settings.log_format, settings.log_libraries
        ),
        Worker=PipelineWorker,
        # Turns are acked when their reply is on Kafka, which may wait for the previous
        # reply of the chat to be applied by another agent: a rebalance must not wait
        # for that. Unacked turns of revoked partitions are replayed by their new owner.
        stream_wait_empty=False,
    )
    app.settings = settings
    app.rebalance_hooks = []
    app.ready_hooks = []
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

    agents.guard.agent.register(
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
        config=guard_config(settings),
        tables=agents.guard.config.GuardTables(
            state=tables.TypedTable(tables.guard_state_table(app, n), tables.GuardState),
            chats=chats,
            counters=tables.TypedTable(tables.rate_counters_table(app, n), tables.Counter),
            token_usage=token_usage,
            sender_replies=sender_replies,
        ),
        topics=agents.guard.config.GuardTopics(
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
        respond_config(settings),
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
        config=window_config(settings),
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
