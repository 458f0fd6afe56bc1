"""The pipeline's own Prometheus metrics, besides Faust's (:mod:`.faust_metrics`).

Every name starts with the app's prefix (:func:`.faust_metrics.metric_prefix` of
WABOT_APP_ID, ``wabot`` by default), in the worker and in the gateway alike, so one
dashboard reads both. Latencies are in seconds. Labels are bounded: topic and agent names,
models, statuses, exception class names; never a chat id or a text.

=========================================  =========  ==================================
metric                                     type       labels
=========================================  =========  ==================================
``<prefix>_records_total``                 counter    topic, agent, direction (in/out)
``<prefix>_dead_letters_total``            counter    agent, error_type
``<prefix>_llm_call_seconds``              histogram  model, status (ok/retry/error)
``<prefix>_llm_tokens_total``              counter    model, kind (prompt/completion)
``<prefix>_turns_in_flight``               gauge      -
``<prefix>_reply_latency_seconds``         histogram  -
``<prefix>_sink_send_seconds``             histogram  outcome (sent/duplicate_skipped/failed)
``<prefix>_sink_failures_total``           counter    reason (refused/expired/error)
``<prefix>_gateway_state``                 gauge      state (1 for the current one)
``<prefix>_store_lag_records``             gauge      topic, partition
``<prefix>_guard_decisions_total``         counter    reason (:mod:`.faust_metrics`)
=========================================  =========  ==================================

Cost per record: agents get these as objects passed in (a topic whose ``send`` also counts,
a sender that times its sends), and every labelled child is looked up once and kept, so a
record costs a dict lookup and an increment. Gauges that describe state (turns in flight,
the gateway's state) are read when /metrics is scraped, not kept up to date per record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, get_args

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas import DeadLetter, DeliveryReceipt, GatewayState, LLMCall, OutboundMessage

log = logging.getLogger(__name__)

__all__ = [
    "METRIC_NAMES",
    "MeteredSender",
    "MeteredTopic",
    "PipelineMetrics",
    "StoreLagWatch",
    "pipeline_metrics",
]

#: Seconds: an LLM call (a local model answers in 100 ms, a long reply takes tens of seconds).
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)
#: Seconds: an inbound message received by the gateway until its reply is sent (the burst
#: quiet period, the LLM call and the "typing..." time included).
REPLY_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300, 900)
#: Seconds: one send through WhatsApp Web (pacing gaps and "typing..." included).
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)

#: Every metric this module declares, without the prefix (and the ``_total`` of counters):
#: the dashboard's queries are checked against it (tests/unit/test_compose_files.py).
METRIC_NAMES = (
    "records",
    "dead_letters",
    "llm_call_seconds",
    "llm_tokens",
    "turns_in_flight",
    "reply_latency_seconds",
    "sink_send_seconds",
    "sink_failures",
    "gateway_state",
    "store_lag_records",
)

GATEWAY_STATES: tuple[str, ...] = get_args(GatewayState)
SINK_OUTCOMES = ("sent", "duplicate_skipped", "failed")
SINK_FAILURES = ("refused", "expired", "error")


class _Kept:
    """A labelled metric's children, each looked up once (prometheus_client validates and
    sorts the labels on every ``labels()`` call)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class PipelineMetrics:
    """The metrics of one app prefix; get it with :func:`pipeline_metrics` (one per prefix
    and registry, so the gateway inside a worker shares the worker's)."""

    def __init__(self, prefix: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.prefix = prefix
        self.registry = registry
        p = prefix
        self.records = _Kept(
            Counter(
                f"{p}_records",
                "Records consumed (direction=in) or produced (out) by an agent, per topic. "
                "agent=gateway: what the gateway produces from WhatsApp Web",
                ["topic", "agent", "direction"],
                registry=registry,
            )
        )
        self.dead_letters = _Kept(
            Counter(
                f"{p}_dead_letters",
                "Records sent to the dead-letter topic, by the agent that refused them and "
                "the kind of error (its exception class)",
                ["agent", "error_type"],
                registry=registry,
            )
        )
        self.llm_call_seconds = _Kept(
            Histogram(
                f"{p}_llm_call_seconds",
                "Latency of LLM calls in seconds, by model and outcome "
                "(ok, retry: asked again, error)",
                ["model", "status"],
                buckets=LLM_BUCKETS,
                registry=registry,
            )
        )
        self.llm_tokens = _Kept(
            Counter(
                f"{p}_llm_tokens",
                "LLM tokens used, by model and kind (prompt, completion)",
                ["model", "kind"],
                registry=registry,
            )
        )
        self.turns_in_flight = Gauge(
            f"{p}_turns_in_flight",
            "Turns the respond agent of this worker has taken and not finished "
            "(queued behind their chat, waiting for the LLM, or in an LLM call)",
            registry=registry,
        )
        self.reply_latency = Histogram(
            f"{p}_reply_latency_seconds",
            "Seconds from the gateway receiving a message to the last part of its reply "
            "being sent through WhatsApp Web",
            buckets=REPLY_BUCKETS,
            registry=registry,
        )
        self.sink_send_seconds = _Kept(
            Histogram(
                f"{p}_sink_send_seconds",
                "Seconds the sink's send through WhatsApp Web took (pacing and typing "
                "included), by outcome",
                ["outcome"],
                buckets=SEND_BUCKETS,
                registry=registry,
            )
        )
        self.sink_failures = _Kept(
            Counter(
                f"{p}_sink_failures",
                "Outbound records the sink did not send: refused (WhatsApp refused every "
                "retry), expired (older than WABOT_SEND_MAX_AGE_S), error (the send raised)",
                ["reason"],
                registry=registry,
            )
        )
        self.store_lag = _Kept(
            Gauge(
                f"{p}_store_lag_records",
                "Records of a topic partition not yet in the conversation store: its end "
                "offset minus the archive's committed offset",
                ["topic", "partition"],
                registry=registry,
            )
        )
        # Every fixed label value is exported from the start, at 0, so rates never start
        # from a missing series.
        for outcome in SINK_OUTCOMES:
            self.sink_send_seconds(outcome)
        for reason in SINK_FAILURES:
            self.sink_failures(reason)
        self._gateway: _GatewayState | None = None
        self._dlq_topic = ""
        self._delivery_topic = ""

    # --- wiring -----------------------------------------------------------------------

    def set_topics(self, *, dlq: str, delivery: str) -> None:
        """Name the topics whose records are also counted by content (dead letters by
        agent and error, the sink's failed receipts)."""
        self._dlq_topic, self._delivery_topic = dlq, delivery

    def sending(self, topic: Any, agent: str) -> MeteredTopic:
        """``topic`` for ``agent``: every send counts as a record out of ``agent``."""
        name = topic.get_topic_name()
        observe: Callable[[Any], None] | None = None
        if name == self._dlq_topic:
            observe = self._dead_letter
        elif name == self._delivery_topic and agent == "deliver":
            observe = self._receipt
        return MeteredTopic(topic, self.records(name, agent, "out").inc, observe)

    def record_in(self, topic: str, agent: str) -> Callable[[], None]:
        """The increment of one record in to ``agent`` from ``topic`` (keep it)."""
        inc: Callable[[], None] = self.records(topic, agent, "in").inc
        return inc

    def track_turns(self, in_flight: Callable[[], int]) -> None:
        """``turns_in_flight`` reads ``in_flight()`` at each scrape."""
        self.turns_in_flight.set_function(in_flight)

    def track_gateway(self, gateway: Any) -> None:
        """``gateway_state`` reads ``gateway.state`` at each scrape."""
        if self._gateway is None:
            self._gateway = _GatewayState(f"{self.prefix}_gateway_state", gateway)
            self.registry.register(self._gateway)
        self._gateway.gateway = gateway

    # --- observations -----------------------------------------------------------------

    def llm_calls(self, calls: Iterable[LLMCall]) -> None:
        """The calls of one completion: latency and tokens of each real call (the
        ``fallback`` record of a turn no endpoint answered is no call)."""
        for call in calls:
            if call.status == "fallback" or call.status == "skipped":
                continue
            self.llm_call_seconds(call.model, call.status).observe(call.latency_ms / 1000)
            if call.prompt_tokens:
                self.llm_tokens(call.model, "prompt").inc(call.prompt_tokens)
            if call.completion_tokens:
                self.llm_tokens(call.model, "completion").inc(call.completion_tokens)

    def sent(self, message: OutboundMessage, outcome: str, seconds: float) -> None:
        """One send of the sink: its latency, and the reply's latency when it was the
        last part of a reply to messages the gateway received."""
        self.sink_send_seconds(outcome).observe(seconds)
        if outcome == "failed":
            self.sink_failures("refused").inc()
        elif (
            outcome == "sent"
            and message.received_at is not None
            and message.part == message.parts - 1
        ):
            self.reply_latency.observe(max(0.0, time.time() - message.received_at.timestamp()))

    def _dead_letter(self, letter: Any) -> None:
        if isinstance(letter, DeadLetter):
            self.dead_letters(letter.agent, letter.error_type).inc()

    def _receipt(self, receipt: Any) -> None:
        # The sink reports a refused send itself (``sent``); here only what it never tried.
        if (
            isinstance(receipt, DeliveryReceipt)
            and receipt.status == "failed"
            and (receipt.reason or "").startswith("expired")
        ):
            self.sink_failures("expired").inc()


_by_prefix: dict[tuple[str, int], PipelineMetrics] = {}


def pipeline_metrics(prefix: str, registry: CollectorRegistry = REGISTRY) -> PipelineMetrics:
    """The metrics of ``prefix`` in ``registry``, declared on first use."""
    key = (prefix, id(registry))
    metrics = _by_prefix.get(key)
    if metrics is None:
        metrics = _by_prefix[key] = PipelineMetrics(prefix, registry)
    return metrics


class MeteredTopic:
    """A topic whose ``send`` counts (and, for some topics, looks at) each record; anything
    else goes to the topic itself."""

    __slots__ = ("_count", "_observe", "_topic")

    def __init__(
        self, topic: Any, count: Callable[[], None], observe: Callable[[Any], None] | None
    ) -> None:
        self._topic = topic
        self._count = count
        self._observe = observe

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self._count()
        if self._observe is not None:
            self._observe(kwargs.get("value"))
        return self._topic.send(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._topic, name)


class MeteredSender:
    """The gateway as the deliver agent sees it, with each send timed."""

    def __init__(self, sender: Any, metrics: PipelineMetrics) -> None:
        self._sender = sender
        self._metrics = metrics

    async def account(self) -> str:
        account: str = await self._sender.account()
        return account

    async def send(self, message: OutboundMessage) -> Any:
        started = time.monotonic()
        try:
            outcome = await self._sender.send(message)
        except Exception:
            self._metrics.sink_failures("error").inc()
            raise
        self._metrics.sent(message, outcome.status, time.monotonic() - started)
        return outcome


class _GatewayState(Collector):
    """``<prefix>_gateway_state{state}``: 1 for the gateway's state now, 0 for the others."""

    def __init__(self, name: str, gateway: Any) -> None:
        self.name = name
        self.gateway = gateway

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name,
            "The WhatsApp gateway's state: 1 for the current one (starting, qr, "
            "authenticated, ready, disconnected, logged_out, conflict)",
            labels=["state"],
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        current = getattr(self.gateway, "state", None)
        for state in GATEWAY_STATES:
            family.add_metric([state], 1.0 if state == current else 0.0)
        yield family


class StoreLagWatch:
    """Sets ``store_lag_records`` every ``interval_s``: per partition of the archived
    topics, the end offset minus the archive group's committed offset (or minus the first
    offset still on the topic, when the group has committed nothing there yet).

    Run :meth:`run` as a task of the worker that runs the archive. The broker being away
    leaves the last values and is retried (logged at DEBUG: the archive logs outages).
    """

    def __init__(
        self,
        metrics: PipelineMetrics,
        bootstrap_servers: Sequence[str],
        group: str,
        topics: Iterable[str],
        interval_s: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.bootstrap_servers = list(bootstrap_servers)
        self.group = group
        self.topics = list(topics)
        self.interval_s = interval_s

    async def run(self) -> None:
        admin: AIOKafkaAdminClient | None = None
        consumer: AIOKafkaConsumer | None = None
        try:
            while True:
                try:
                    if admin is None or consumer is None:
                        admin, consumer = await self._connect()
                    self._set(await self.lag(admin, consumer))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("store lag: not measured now: %r", exc)
                await asyncio.sleep(self.interval_s)
        finally:
            await _close(admin, consumer)

    async def _connect(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False
        )
        try:
            await admin.start()
            await consumer.start()
        except BaseException:
            await _close(admin, consumer)
            raise
        return admin, consumer

    async def lag(
        self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, int]:
        """Records not yet archived, per partition of every archived topic that exists."""
        cluster = await consumer._client.fetch_all_metadata()
        tps = [
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return {}
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        committed = await admin.list_consumer_group_offsets(self.group, partitions=tps)
        lag = {}
        for tp in tps:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else -1
            lag[tp] = max(0, ends[tp] - max(offset, starts[tp]))
        return lag

    def _set(self, lag: Mapping[TopicPartition, int]) -> None:
        for tp, records in lag.items():
            self.metrics.store_lag(tp.topic, str(tp.partition)).set(records)


async def _close(admin: AIOKafkaAdminClient | None, consumer: AIOKafkaConsumer | None) -> None:
    for step in (
        consumer.stop if consumer is not None else None,
        admin.close if admin is not None else None,
    ):
        if step is not None:
            try:
                await step()
            except Exception as exc:
                log.debug("store lag: close: %r", exc)
