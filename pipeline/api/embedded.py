"""The operator API inside a worker (``WABOT_API_IN_WORKER=true``; ``make dev`` sets it).

Production runs ``faust -A pipeline api`` as its own process. For development one process is
easier: the worker then also serves the API and its dashboard on WABOT_API_PORT. The API
talks to the bot only through Kafka records and the store, as it does in its own process.

uvicorn's ``Server.serve`` takes over SIGINT and SIGTERM while it runs; inside a worker those
belong to Faust. So the server is driven by its public steps (``startup``, ``main_loop``,
``shutdown``) in a task of the worker; when the worker stops it cancels the task, and the
shutdown (open requests finished, producer flushed, store closed) runs all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pipeline.config.settings import Settings

__all__ = ["install_api"]

log = logging.getLogger(__name__)


def install_api(app: Any, settings: Settings) -> None:
    """Serve the operator API on ``settings.web_host:settings.api_port`` while ``app``'s
    worker runs (a task of the worker)."""
    import uvicorn

    from pipeline.api.app import create_api
    from pipeline.api.serving import server_config

    config = server_config(create_api(settings), settings)
    server = uvicorn.Server(config)

    @app.task
    async def operator_api() -> None:
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        if server.should_exit:  # the port was taken, or the app's start-up failed
            log.error("operator API: not serving on port %d", settings.api_port)
            return
        log.info(
            "operator API and dashboard on http://%s:%d/dashboard",
            settings.web_host,
            settings.api_port,
        )
        try:
            await server.main_loop()
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.shield(server.shutdown())
