"""The operator API's FastAPI app: :func:`create_api` wires the routes, auth, errors, the body
limit, metrics and the background work (the scheduler of held messages, the topic tail).

The OpenAPI document is at ``/api/openapi.json`` (docs at ``/api/docs``, behind nothing: the
document holds no data). Start-up never fails on a store or broker that is down: the API then
answers 503 on what needs them (``/readyz`` says which) and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline.api.auth import Auth, RequestLimit
from pipeline.api.dashboard import install_dashboard
from pipeline.api.errors import BodyLimit, JsonRoute, install_error_handlers
from pipeline.api.outbox import Outbox, Scheduler
from pipeline.api.queries import ApiStore
from pipeline.api.routes.context import Context
from pipeline.api.routes.paths import install_routes
from pipeline.api.tail import TopicTail
from pipeline.api.tokens import api_tokens
from pipeline.config.settings import Settings
from pipeline.store import schema
from pipeline.store.engine import create_engine, database_url, shown

__all__ = ["create_api"]

log = logging.getLogger(__name__)


def create_api(settings: Settings, *, background: bool = True) -> FastAPI:
    """The API for ``settings``. ``background=False`` starts no producer, tail or scheduler
    (tests of what needs neither a broker nor a store)."""
    url = database_url(settings.database_url.get_secret_value(), settings.data_dir)
    engine = create_engine(url)
    store = ApiStore(engine)
    outbox = Outbox(settings)
    tail = TopicTail(settings.bootstrap_servers, settings.topic("events"), settings.topic("dlq"))
    registry = CollectorRegistry()
    ctx = Context(
        settings=settings,
        store=store,
        outbox=outbox,
        tail=tail,
        scheduler=Scheduler(store, outbox, settings.api_scheduler_interval_s),
        registry=registry,
        requests=Counter(
            "wabot_api_requests",
            "Operator API requests by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "wabot_api_request_seconds",
            "Operator API request latency by route template",
            ["route"],
            registry=registry,
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if background:
            prepared = asyncio.create_task(_prepare(store, shown(url)))
            tasks.append(prepared)
            tasks.append(
                asyncio.create_task(_keep_trying(outbox.start, "the broker", ctx, prepared))
            )
            tasks.append(asyncio.create_task(_forever(tail.run, "topic tail")))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await outbox.stop()
            await engine.dispose()

    app = FastAPI(
        title="wabot operator API",
        version="1",
        description="Read conversations, steer the bot per chat and account, send by hand.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.router.route_class = JsonRoute  # before any route is added
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    auth = Auth(api_tokens(settings), RequestLimit(settings.api_requests_per_minute))
    install_routes(app, auth, metrics_public=settings.metrics_public)
    install_dashboard(app)  # /dashboard: open files; its data comes from /api with the token

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        began = time.perf_counter()
        response = await call_next(request)
        route = str(getattr(request.scope.get("route"), "path", "unmatched"))
        ctx.requests.labels(route, request.method, str(response.status_code)).inc()
        ctx.latency.labels(route).observe(time.perf_counter() - began)
        # The template, never the path: ids and search text stay out of INFO logs.
        log.debug("%s %s -> %d", request.method, route, response.status_code)
        return response

    return app


async def _prepare(store: ApiStore, where: str) -> None:
    """Migrate the store when behind (as the archive does), retrying while it is down."""
    delay = 0.5
    while True:
        try:
            before = await schema.upgrade(store.engine)
        except Exception as exc:
            log.warning(
                "api: cannot prepare the store %s (%s); retrying", where, type(exc).__name__
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        if before.behind:
            log.info(
                "api: store schema upgraded from %s to %s", before.current or "empty", before.head
            )
        return


async def _keep_trying(
    start: Callable[[], Awaitable[None]], what: str, ctx: Context, prepared: Awaitable[None]
) -> None:
    """Start the producer (retrying while the broker is down), then, once the store's schema
    is up to date (``prepared``), run the scheduler."""
    delay = 0.5
    while True:
        try:
            await start()
            break
        except Exception as exc:
            log.warning("api: cannot reach %s (%s); retrying", what, type(exc).__name__)
            await ctx.outbox.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    log.info("api: producing to %s and %s", ctx.outbox.control_topic, ctx.outbox.outbound_topic)
    await prepared
    await ctx.scheduler.run()


async def _forever(run: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        try:
            await run()
        except Exception as exc:
            log.warning("api: %s stopped (%s); restarting", what, type(exc).__name__)
            await asyncio.sleep(2)
