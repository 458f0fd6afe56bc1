"""Faust's Prometheus metrics at /metrics, at a fraction of their per-record cost.

Faust's PrometheusMonitor looks up a labelled child (``metric.labels(topic=...)``) for
every record in, every event, every table get and set and every send, and rebuilds the
stream's label string from its name each event. prometheus_client validates and sorts
labels on each lookup: profiled, that was ~6% of the worker's CPU per turn. The label
sets are few (topics, partitions, streams, tables), so each child is looked up once and
kept. Metric names and labels are unchanged.

Besides Faust's metrics, the pipeline's own: ``<prefix>_guard_decisions_total{reason}``,
the guard's decisions not to answer (see :func:`guard_decision_counter`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

    def _stream_label(self, stream: Any) -> str:
        # Streams live as long as the worker; their label never changes.
        label = self._stream_labels.get(id(stream))
        if label is None:
            label = self._stream_labels[id(stream)] = super()._stream_label(stream)
        return label


def setup_metrics(app: Any, name_prefix: str) -> None:
    """Faust's metrics and its /metrics page, with the cheaper monitor."""
    setup_prometheus_sensors(app, name_prefix=name_prefix)
    app.monitor = PipelineMonitor(metrics=app.monitor._metrics)


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
