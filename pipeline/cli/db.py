"""``faust -A pipeline db upgrade|current``: the store's schema from the command line."""

from __future__ import annotations

import sys
from typing import Any

import click
from faust.cli import argument

from pipeline.config.settings import Settings
from pipeline.store import schema
from pipeline.store.engine import create_engine, database_url, shown
from pipeline.store.writer import is_unavailable

__all__ = ["register"]


def register(app: Any, settings: Settings) -> None:
    @app.command(argument("action", type=click.Choice(["upgrade", "current"])))
    async def db(self: Any, action: str) -> None:
        """The conversation store's schema: `upgrade` migrates it to this code's version
        (creating it in an empty database), `current` shows its version (exit 1: behind)."""
        url = database_url(settings.database_url.get_secret_value(), settings.data_dir)
        engine = create_engine(url)
        try:
            if action == "upgrade":
                before = await schema.upgrade(engine)
                if before.behind:
                    click.echo(
                        f"store {shown(url)}: upgraded from {before.current or 'empty'} "
                        f"to {before.head} (head)"
                    )
                else:
                    click.echo(f"store {shown(url)}: already at {before.head} (head)")
            else:
                found = await schema.state(engine)
                if found.behind:
                    click.echo(
                        f"store {shown(url)}: at {found.current or 'nothing (empty)'}, "
                        f"behind {found.head} (head); run `faust -A pipeline db upgrade`"
                    )
                    sys.exit(1)
                click.echo(f"store {shown(url)}: at {found.current} (head)")
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            click.echo(f"error: cannot reach the store {shown(url)}: {reason}", err=True)
            sys.exit(2)
        finally:
            await engine.dispose()
