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
    from pipeline.application import PipelineApp

_app: PipelineApp | None = None


def get_app() -> PipelineApp:
    """Build the app from the environment once; exit with a clear line on bad config."""
    global _app
    if _app is None:
        from pipeline.application import create_app
        from pipeline.commands import register_commands
        from pipeline.settings import ConfigError, load_settings

        try:
            settings = load_settings()
        except ConfigError as exc:
            print(f"wabot: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        _app = create_app(settings)
        register_commands(_app, settings)
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = ["app", "get_app"]
