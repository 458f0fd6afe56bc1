"""Faust's Prometheus metrics at /metrics, at a fraction of their per-record cost.

Faust's PrometheusMonitor looks up a labelled child (``metric.labels(topic=...)``) for
every record in, every event, every table get and set and every send, and rebuilds the
stream's label string from its name each event. prometheus_client validates and sorts
labels on each lookup: profiled, that was ~6% of the worker's CPU per turn. The label
sets are few (topics, partitions, streams, tables), so each child is looked up once and
kept. Metric names and labels are unchanged.

Besides Faust's metrics, the pipeline's own: ``<prefix>_guard_decisions_total{reason}``,
the guard's decisions not to answer (see :func:`guard_decision_counter`), the records each
agent takes in (:meth:`PipelineMonitor.count_records_in`) and the rest in
:mod:`pipeline.observability.pipeline_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.agents.agent import current_agent
from faust.sensors.prometheus import PrometheusMonitor, setup_prometheus_sensors
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from schemas import DECISION_REASONS


class _KeptChildren:
    """A labelled metric whose children are created once per label set.

    Faust removes the topic and partition children at each rebalance (``remove``), so
    kept children are forgotten then; anything else goes to the metric itself.
    """

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[tuple[str, Any], ...], Any] = {}

    def labels(self, **labels: Any) -> Any:
        key = tuple(labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(**labels)
        return child

    def remove(self, *labelvalues: Any) -> None:
        self._children.clear()
        self._metric.remove(*labelvalues)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


class PipelineMonitor(PrometheusMonitor):
    def __init__(self, metrics: Any, **kwargs: Any) -> None:
        kept = metrics._replace(
            **{
                name: _KeptChildren(metric)
                for name, metric in metrics._asdict().items()
                if getattr(metric, "_labelnames", ())
            }
        )
        super().__init__(kept, **kwargs)
        self._stream_labels: dict[int, str] = {}
        #: ``(topic, stream) -> increment`` of ``<prefix>_records_total{direction="in"}``.
        self._records_in: dict[tuple[str, int], Callable[[], None]] = {}
        self._record_in: Callable[[str, str], Callable[[], None]] | None = None

    def count_records_in(self, record_in: Callable[[str, str], Callable[[], None]]) -> None:
        """Count every event an agent's stream takes: ``record_in(topic, agent)`` gives the
        increment of that pair (``PipelineMetrics.record_in`` in
        pipeline/observability/pipeline_metrics.py)."""
        self._record_in = record_in

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        state = super().on_stream_event_in(tp, offset, stream, event)
        if self._record_in is not None:
            key = (tp.topic, id(stream))
            inc = self._records_in.get(key)
            if inc is None:
                # A derived stream (``stream.noack()``) has no prefix; the agent's task has.
                agent = stream.prefix or getattr(current_agent(), "name", None) or "stream"
                inc = self._records_in[key] = self._record_in(tp.topic, agent)
            inc()
        return state

    def _stream_label(self, stream: Any) -> str:
        # Streams live as long as the worker; their label never changes.
        label = self._stream_labels.get(id(stream))
        if label is None:
            label = self._stream_labels[id(stream)] = super()._stream_label(stream)
        return label


def setup_metrics(app: Any, name_prefix: str) -> PipelineMonitor:
    """Faust's metrics and its /metrics page, with the cheaper monitor (returned)."""
    setup_prometheus_sensors(app, name_prefix=name_prefix)
    monitor = app.monitor = PipelineMonitor(metrics=app.monitor._metrics)
    return monitor


def metric_prefix(app_id: str) -> str:
    """The name prefix of an app's metrics: its id with ``-`` and ``.`` as ``_`` (Faust's rule)."""
    return app_id.replace("-", "_").replace(".", "_")


def guard_decision_counter(
    name_prefix: str, registry: CollectorRegistry = REGISTRY
) -> Callable[[str], None]:
    """``<prefix>_guard_decisions_total{reason}``: inbound records the guard did not answer.

    One increment per GuardDecision record (so per inbound record, not per skipped turn).
    ``reason`` takes only the values of :data:`schemas.DECISION_REASONS`; every one is
    exported from the start, at 0, so a rate over a reason never starts from a missing
    series. Returns ``count(reason)``; an unknown reason raises KeyError.
    """
    counter = Counter(
        f"{name_prefix}_guard_decisions",
        "Inbound records not answered, by the guard's reason",
        ["reason"],
        registry=registry,
    )
    children = {reason: counter.labels(reason=reason) for reason in DECISION_REASONS}

    def count(reason: str) -> None:
        children[reason].inc()

    return count
