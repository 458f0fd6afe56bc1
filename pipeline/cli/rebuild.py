"""``faust -A pipeline rebuild-tables``: the command over :mod:`pipeline.ops.rebuild`."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click
from faust.cli import option

from pipeline.config.settings import Settings
from pipeline.ops.rebuild import RebuildError, rebuild, render


def register(app: Any, settings: Settings) -> None:
    """Add ``faust -A <app> rebuild-tables`` to ``app`` (a Faust app with its tables declared).

    Exit codes: 0 done, 1 refused (:data:`EXIT_REFUSED`), 2 broker unreachable or
    unreadable (:data:`EXIT_ERROR`); errors are one line on stderr.
    """

    @app.command(
        option(
            "--digest-only",
            is_flag=True,
            default=False,
            help="Only read the changelogs and print the digests; delete nothing.",
        ),
        option(
            "--force",
            is_flag=True,
            default=False,
            help="Delete this machine's store even while the app's consumer group has "
            "members (workers on other machines). A store open on this machine is never "
            "deleted.",
        ),
        option(
            "--json",
            "as_json",
            is_flag=True,
            default=False,
            help="Print the report as one JSON object.",
        ),
        option(
            "--timeout",
            type=float,
            default=30.0,
            show_default=True,
            help="Seconds to wait for the broker to answer, and for records while reading.",
        ),
    )
    async def rebuild_tables(
        self: Any, digest_only: bool, force: bool, as_json: bool, timeout: float
    ) -> None:
        """Rebuild every table from its changelog: delete this worker's local table store.

        Refuses while a worker of the app is live (its consumer group has members) unless
        --force. Reads every table's changelog topic from offset 0 to its end (last value
        per key wins, a null value deletes the key) and prints per table the records read,
        the live keys and a sha256 digest of the table's content, to compare before and
        after. Then deletes the store under <WABOT_DATA_DIR>/worker (rocksdb://; memory://
        keeps nothing on disk), so the next worker start rebuilds every table from its
        changelog. Exit codes: 0 done, 1 refused, 2 broker unreachable.
        """
        # aiokafka logs every failed connection attempt; the one error line is ours.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            report = await rebuild(
                app, settings, force=force, digest_only=digest_only, timeout=timeout
            )
        except RebuildError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            for line in render(report):
                click.echo(line)
