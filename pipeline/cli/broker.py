"""``faust -A pipeline broker start|stop|status``: a broker the project runs itself."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from faust.cli import argument, option

from pipeline.broker import (
    CHOICES,
    KINDS,
    BrokerError,
    BrokerKind,
    ManagedBroker,
    choose_kind,
    make_broker,
    metadata_ok,
)
from pipeline.config.settings import Settings


def register(app: Any, settings: Settings) -> None:
    @app.command(
        argument("action", type=click.Choice(["start", "stop", "status"])),
        option(
            "--kind",
            type=click.Choice(CHOICES),
            default="auto",
            show_default=True,
            help="kafka: Apache Kafka 4.x, topics kept on disk; embedded: Tansu, memory only; "
            "auto: kafka where it can run, else embedded (stop/status: whichever runs)",
        ),
        option("--port", type=int, default=None, help="Port (default: from WABOT_BROKER_URL)"),
    )
    async def broker(self: Any, action: str, kind: str, port: int | None) -> None:
        """Start, stop or show a broker the project runs itself."""
        try:
            if action == "start":
                await _start(settings, kind, port)
            elif action == "stop":
                _stop(settings, kind, port)
            else:
                await _status(settings, kind, port)
        except BrokerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


def _kinds(kind: str) -> tuple[BrokerKind, ...]:
    return KINDS if kind == "auto" else (kind,)  # type: ignore[return-value]


def _running(settings: Settings, kind: str, port: int | None) -> list[ManagedBroker]:
    return [
        managed
        for managed in (make_broker(settings, k, port) for k in _kinds(kind))
        if managed.info() is not None
    ]


async def _start(settings: Settings, kind: str, port: int | None) -> None:
    running = _running(settings, kind, port) if kind == "auto" else []
    if running:
        chosen: BrokerKind = running[0].kind  # type: ignore[assignment]
    elif kind == "auto":
        chosen, why = choose_kind(settings)
        if why:
            click.echo(
                f"warning: Apache Kafka cannot run here ({why}); starting the embedded broker, "
                "which keeps topics in memory only: they are gone when it stops",
                err=True,
            )
    else:
        chosen = kind  # type: ignore[assignment]
    managed = make_broker(settings, chosen, port)
    began = time.monotonic()
    info = await managed.start()
    kept = f"topics kept in {managed.workdir}" if chosen == "kafka" else "topics in memory only"
    click.echo(
        f"{chosen} broker ready on {info.bootstrap} (pid {info.pid}) "
        f"in {time.monotonic() - began:.1f}s; {kept}; log: {info.log}"
    )


def _stop(settings: Settings, kind: str, port: int | None) -> None:
    running = _running(settings, kind, port)
    if not running:
        click.echo(
            f"no {'' if kind == 'auto' else kind + ' '}broker started by this project is running"
        )
    for managed in running:
        stopped = managed.stop()
        if stopped is not None:
            click.echo(f"stopped {managed.kind} broker on {stopped.bootstrap} (pid {stopped.pid})")


async def _status(settings: Settings, kind: str, port: int | None) -> None:
    running = _running(settings, kind, port)
    if not running:
        click.echo(f"{'no' if kind == 'auto' else kind} broker: not running")
        sys.exit(3)
    for managed in running:
        found = managed.info()
        if found is None:
            continue
        answering = await metadata_ok(found.bootstrap)
        click.echo(
            f"{managed.kind} broker: running on {found.bootstrap} (pid {found.pid}), "
            f"{'answering metadata' if answering else 'NOT answering metadata'}; "
            f"log: {found.log}"
        )
        if not answering:
            sys.exit(1)
