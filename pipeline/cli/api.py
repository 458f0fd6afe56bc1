"""``faust -A pipeline api``: the operator API on WABOT_WEB_HOST:WABOT_API_PORT (uvicorn).

Faust runs an ``async`` command as a service under its own worker, which on Ctrl-C or SIGTERM
cancels every task of the loop, uvicorn's lifespan included. So this command runs uvicorn
itself (:class:`ServeApi` overrides the command's call): uvicorn handles the signals, lets open
requests finish and runs the app's shutdown (producer flushed, store connections closed).
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any, NoReturn

import click
from faust.cli import AppCommand

from pipeline.config.settings import Settings

__all__ = ["register", "serve"]

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Serve the API until Ctrl-C or SIGTERM (blocks; runs its own event loop)."""
    import uvicorn

    from pipeline.api.app import create_api
    from pipeline.api.serving import server_config
    from pipeline.observability.logs import logging_config

    logging.config.dictConfig(
        logging_config(settings.log_level, settings.log_format, settings.log_libraries)
    )
    click.echo(
        f"operator API on http://{settings.web_host}:{settings.api_port} "
        "(OpenAPI: /api/openapi.json)"
    )
    server = uvicorn.Server(server_config(create_api(settings), settings))
    server.run()
    if not server.started:  # the port was taken, or the app's start-up failed
        raise SystemExit(3)  # uvicorn.run's exit status for this


def register(app: Any, settings: Settings) -> None:
    class ServeApi(AppCommand):
        def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
            serve(settings)
            raise SystemExit(0)

    @app.command(base=ServeApi)
    async def api(self: Any) -> None:
        """Serve the operator API (FastAPI on WABOT_WEB_HOST:WABOT_API_PORT) until Ctrl-C."""
