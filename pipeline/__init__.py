"""The WhatsApp LLM pipeline. ``faust -A pipeline worker`` uses ``pipeline.app``.

The app is built on first access to ``pipeline.app`` (not at import), so the
submodules (settings, brokers, logs) can be imported and tested on their own. A bad
setting stops the process with one line naming the variable, instead of a traceback
from deep inside Faust's start-up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.application.app import PipelineApp
    from pipeline.config.settings import Settings

_app: PipelineApp | None = None


def settings_or_exit(prog: str = "wabot") -> Settings:
    """Settings from the environment, or exit 2 with one line naming the bad variable."""
    from pipeline.config.settings import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def use_event_loop(kind: str) -> None:
    """Make ``kind`` ("uvloop" or "asyncio", WABOT_EVENT_LOOP) the event loop of this process.

    Called before the app exists, so before Faust creates its loop (``faust -A pipeline``
    imports this package first). A loop chosen on the command line (``faust -L aio``) or
    with FAUST_LOOP wins; ``mode.loop.use`` sets asyncio's event loop policy."""
    import os

    if kind == "uvloop" and not os.environ.get("FAUST_LOOP"):
        import mode.loop

        mode.loop.use("uvloop")


def get_app() -> PipelineApp:
    """Build the app from the environment once; exit with a clear line on bad config."""
    global _app
    if _app is None:
        from pipeline.application.wiring import create_app
        from pipeline.cli import register_commands

        settings = settings_or_exit()
        use_event_loop(settings.event_loop)
        _app = create_app(settings)
        register_commands(_app, settings)
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = ["app", "get_app", "settings_or_exit"]
