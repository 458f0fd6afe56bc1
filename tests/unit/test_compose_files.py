"""Static checks of the monitoring files in ``compose/``: Prometheus scrapes every service
that serves /metrics, Grafana is provisioned from files that exist, and every metric the
dashboard queries is one the code declares (so the dashboard cannot drift from the code)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from pipeline.observability.faust_metrics import guard_decision_counter
from pipeline.observability.pipeline_metrics import METRIC_NAMES, PipelineMetrics

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
GRAFANA = COMPOSE / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "wabot.json"
PREFIX = "wabot"  # the default WABOT_APP_ID, which the dashboard assumes


def _yaml(path: Path) -> Any:
    assert path.is_file(), f"{path} is missing"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _yaml(COMPOSE / "docker-compose.yml")["services"]
    return services


def declared_samples() -> set[str]:
    """Every sample name the worker and the gateway export under the default prefix."""
    registry = CollectorRegistry()
    FaustMetrics.create(registry, PREFIX)
    guard_decision_counter(PREFIX, registry)
    metrics = PipelineMetrics(PREFIX, registry)
    metrics.track_gateway(SimpleNamespace(state="ready"))
    # Labelled metrics export samples only once a child exists: make one of each.
    metrics.records("t", "a", "in").inc()
    metrics.dead_letters("a", "E").inc()
    metrics.llm_call_seconds("m", "ok").observe(1)
    metrics.llm_tokens("m", "prompt").inc()
    metrics.store_lag("t", "0").set(0)
    names = {s.name for family in registry.collect() for s in family.samples}
    # Faust's labelled counters (per topic) have no child before a record.
    names |= {f"{PREFIX}_messages_received_per_topic_total", f"{PREFIX}_topic_messages_sent_total"}
    return names


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_valid_json_with_a_query_in_every_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "prometheus"


def test_every_metric_the_dashboard_queries_is_declared_by_the_code() -> None:
    declared = declared_samples()
    used = {m for expr in _exprs() for m in re.findall(rf"\b{PREFIX}_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries no wabot metric"
    unknown = sorted(used - declared)
    assert not unknown, f"the dashboard queries metrics no code declares: {unknown}"


def test_the_dashboard_has_a_panel_for_each_pipeline_metric() -> None:
    text = " ".join(_exprs())
    missing = [n for n in (*METRIC_NAMES, "guard_decisions") if f"{PREFIX}_{n}" not in text]
    assert not missing, f"no dashboard panel queries {missing}"


def test_grafana_is_provisioned_from_the_files_in_compose() -> None:
    grafana = _services()["grafana"]
    mounts = dict(reversed(str(v).split(":")[:2]) for v in grafana["volumes"])
    provisioning = mounts["/etc/grafana/provisioning"]
    assert (COMPOSE / provisioning).resolve() == (GRAFANA / "provisioning").resolve()
    datasource = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasource["datasources"]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in _services()
    providers = _yaml(GRAFANA / "provisioning" / "dashboards" / "wabot.yml")["providers"]
    path = providers[0]["options"]["path"]
    assert (COMPOSE / mounts[path]).resolve() == DASHBOARD.parent.resolve()
    for port in grafana["ports"]:
        assert str(port).startswith("127.0.0.1:")


def test_prometheus_scrapes_the_worker_the_gateway_and_the_api() -> None:
    services = _services()
    jobs = {j["job_name"]: j for j in _yaml(COMPOSE / "prometheus.yml")["scrape_configs"]}
    ports = {
        "worker": services["worker"]["environment"]["WABOT_WEB_PORT"],
        "gateway": services["gateway"]["environment"]["WABOT_GATEWAY_WEB_PORT"],
        "api": services["api"]["environment"]["WABOT_API_PORT"],
    }
    for service, port in ports.items():
        job = jobs[f"wabot-{service}"]
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets == [f"{service}:{port}"], job
        assert job.get("metrics_path", "/metrics") == "/metrics"
