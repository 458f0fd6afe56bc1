"""``faust -A pipeline archive``: the archive in a process of its own
(:mod:`pipeline.store.archive_process`)."""

from __future__ import annotations

from typing import Any, NoReturn

import click
from faust.cli import AppCommand, option

from pipeline.config.settings import Settings
from pipeline.store.archive_process import serve_archive


def register(app: Any, settings: Settings) -> None:
    class ServeArchive(AppCommand):
        # Like the api command: the process is ours, not a Faust worker's (whose shutdown
        # would cancel the archive's tasks in no set order).
        def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
            given = {**self.kwargs, **kwargs}
            serve_archive(settings, given.get("metrics_port"), given.get("nice", 10))
            raise SystemExit(0)

    @app.command(
        option(
            "--metrics-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="Serve the archive's Prometheus /metrics on WABOT_WEB_HOST at this port.",
        ),
        option(
            "--nice",
            type=click.IntRange(0, 19),
            default=10,
            show_default=True,
            help="Lower the archive's CPU priority by this much (os.nice): the bot's turns "
            "come first; 0 keeps it.",
        ),
        base=ServeArchive,
    )
    async def archive(self: Any, metrics_port: int | None, nice: int) -> None:
        """Run the archive alone (the topics into the store; run the worker with
        WABOT_ARCHIVE_ENABLED=false) until Ctrl-C."""
