"""The WhatsApp Web gateway. ``faust -A pipeline.gateway worker`` runs one account's gateway.

Like :mod:`pipeline`, the app is built on first access to ``pipeline.gateway.app``; a bad
setting stops the process with one line naming the variable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.application.app import PipelineApp

_app: PipelineApp | None = None


def get_app() -> PipelineApp:
    """Build the gateway app from the environment once; exit with a clear line on bad config."""
    global _app
    if _app is None:
        from pipeline import settings_or_exit
        from pipeline.application.wiring import create_gateway_app

        _app = create_gateway_app(settings_or_exit("wabot gateway"))
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'pipeline.gateway' has no attribute {name!r}")


__all__ = ["app", "get_app"]
