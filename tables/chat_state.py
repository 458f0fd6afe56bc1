"""chat_state: per-chat switches (paused until, persona, enabled, loop counter)."""

from __future__ import annotations

from typing import Any


def chat_state_table(app: Any, partitions: int) -> Any:
    """Values are ``schemas.ChatState`` as JSON dicts."""
    return app.Table(
        "chat_state",
        default=None,
        partitions=partitions,
        key_type=str,
        help="Per chat: paused until, persona, enabled, consecutive bot replies.",
    )
