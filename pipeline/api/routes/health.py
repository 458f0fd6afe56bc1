"""The open routes: ``/healthz`` (liveness), ``/readyz`` (the store and the broker answer) and
``/metrics`` (open while WABOT_METRICS_PUBLIC is true)."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.api.models import Health, Readiness
from pipeline.api.routes.context import Ctx

__all__ = ["OPEN_PATHS", "healthz", "metrics", "readyz"]


#: Paths anyone may call (``/metrics`` too while WABOT_METRICS_PUBLIC is true).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


async def healthz() -> Health:
    """The process answers (liveness)."""
    return Health(status="ok")


async def readyz(ctx: Ctx) -> Any:
    """Ready when the store answers a query and the broker a metadata request (503 with the
    same body otherwise); ``gateway_state`` is the latest state in the store, for information."""
    problems = []
    store_ok = True
    state = None
    try:
        await ctx.store.ping()
        gateways = await ctx.store.gateway_states()
        state = gateways[0].state if gateways else None
    except Exception as exc:
        store_ok = False
        problems.append(f"store: {type(exc).__name__}")
    broker_ok = await ctx.outbox.broker_ok()
    if not broker_ok:
        problems.append("broker: no answer to a metadata request")
    body = Readiness(
        ready=store_ok and broker_ok,
        store=store_ok,
        broker=broker_ok,
        gateway_state=state,
        problems=problems,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


async def metrics(ctx: Ctx) -> Response:
    """Prometheus text format: the API's requests by route and status, and latencies."""
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)
