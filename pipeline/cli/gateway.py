"""``faust -A pipeline gateway-doctor``: does WA-JS work on this WhatsApp Web?"""

from __future__ import annotations

import sys
from typing import Any

import click
from faust.cli import option

from pipeline.config.settings import Settings


def register(app: Any, settings: Settings) -> None:
    @app.command(
        option(
            "--url",
            default="https://web.whatsapp.com/",
            show_default=True,
            help="The page to check: WhatsApp Web, or the look-alike's base URL + '/'",
        ),
        option(
            "--timeout",
            type=float,
            default=60.0,
            show_default=True,
            help="Seconds to wait for the page and for WA-JS to get ready",
        ),
    )
    async def gateway_doctor(self: Any, url: str, timeout: float) -> None:
        """Check that WA-JS works on WhatsApp Web: versions and the functions the gateway uses."""
        from pipeline.gateway.doctor import diagnose

        report = await diagnose(url, timeout)
        for line in report.lines:
            click.echo(line, err=line.startswith("error:"))
        if report.exit_code:
            sys.exit(report.exit_code)
