"""``faust -A pipeline replay`` and ``faust -A pipeline replay-report``."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click
from faust.cli import argument, option

from pipeline.config.settings import Settings
from pipeline.replay.progress import Progress
from pipeline.replay.report.run_folder import write_report
from pipeline.replay.runner import (
    ReplayError,
    ReplayRun,
    check_source,
    parse_overrides,
    run_replay,
)
from pipeline.replay.selection import Selection, SelectionError

CONTEXT_HELP = (
    "original: each prompt holds the replies the live bot really sent (judge a model turn "
    "by turn); replayed: the new model sees its own earlier replies (a counterfactual "
    "conversation)"
)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"replay: {message}", err=True)
    sys.exit(code)


def register(app: Any, settings: Settings) -> None:
    """Add ``replay`` and ``replay-report`` to the app's commands."""

    @app.command(
        option("--since", help="Start of the range: ISO time (UTC if no zone) or -24h, -30m, -7d"),
        option("--until", help="End of the range (exclusive), same forms; default: now"),
        option("--chat", "chats", multiple=True, help="Only this chat id (repeatable)"),
        option(
            "--offsets",
            multiple=True,
            help="Only offsets START..END-1 of a partition, as P:START-END (repeatable)",
        ),
        option(
            "--set",
            "overrides",
            multiple=True,
            help="Override a setting for the replay, NAME=VALUE (e.g. llm_model=gpt-4o; "
            "system_prompt=@prompt.txt reads a file); repeatable",
        ),
        option(
            "--context",
            type=click.Choice(["original", "replayed"]),
            default="original",
            show_default=True,
            help=CONTEXT_HELP,
        ),
        option(
            "--source-app",
            default=None,
            help="App id whose recorded replies are the original side (default: WABOT_APP_ID)",
        ),
        option("--keep", is_flag=True, help="Keep the run's topics and consumer group"),
        option("--resume", metavar="RUN", help="Go on with an interrupted run"),
        option("--cleanup", metavar="RUN", help="Delete an interrupted or kept run's namespace"),
        option(
            "--stall-timeout",
            type=float,
            default=300.0,
            show_default=True,
            help="Give up when nothing moves for this many seconds",
        ),
    )
    async def replay(
        self: Any,
        since: str | None,
        until: str | None,
        chats: tuple[str, ...],
        offsets: tuple[str, ...],
        overrides: tuple[str, ...],
        context: str,
        source_app: str | None,
        keep: bool,
        resume: str | None,
        cleanup: str | None,
        stall_timeout: float,
    ) -> None:
        """Rerun recorded conversations (wa.inbound, with their chat.control records) through
        guard, respond and apply_reply in an isolated namespace, with other settings, and
        write a compare report."""
        # A broker that does not answer is said once, in our words, not in aiokafka's.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            if cleanup:
                run = ReplayRun.load(settings, cleanup)
                deleted = await run.cleanup()
                click.echo(f"replay {run.state.run_id}: deleted {len(deleted)} topics")
                return
            if resume:
                run = ReplayRun.load(settings, resume)
                if run.state.namespace_deleted or run.state.status == "copying":
                    _fail(f"run {resume} cannot be resumed (status {run.state.status})")
                selection = None
            else:
                selection = Selection.parse(since=since, until=until, chats=chats, offsets=offsets)
                checked = parse_overrides(overrides)
                if not (checked.get("llm_base_url") or settings.llm_base_url):
                    _fail(
                        "no LLM to replay with: set WABOT_LLM_BASE_URL or pass --set "
                        "llm_base_url=URL (while `make dev` runs, its stand-in's URL is in "
                        "its first lines)"
                    )
                await check_source(settings)
                run = ReplayRun.create(
                    settings,
                    selection=selection,
                    context=context,  # type: ignore[arg-type]
                    overrides=checked,
                    source_app=source_app or settings.app_id,
                )
            code = await run_replay(
                run,
                selection=selection,
                keep=keep,
                stall_timeout_s=stall_timeout,
                echo=click.echo,
                progress=Progress(run.state.run_id),
            )
        except (ReplayError, SelectionError) as exc:
            _fail(str(exc))
        except (Exception, asyncio.CancelledError) as exc:
            # Faust's command runner would end with status 0 and say nothing.
            logging.getLogger(__name__).exception("replay failed")
            _fail(f"unexpected error: {exc!r} (traceback above)", 1)
        if code:
            sys.exit(code)

    @app.command(
        argument("run_id", metavar="RUN"),
    )
    async def replay_report(self: Any, run_id: str) -> None:
        """Write report.md and report.html of replay RUN (prices from WABOT_LLM_PRICES)."""
        try:
            run = ReplayRun.load(settings, run_id)
        except ReplayError as exc:
            _fail(str(exc))
        md, html = write_report(run.folder, settings.llm_prices or None)
        click.echo(f"{html}\n{md}")
