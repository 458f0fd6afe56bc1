"""A WhatsApp Web look-alike for development and tests: see :mod:`pipeline.dev.lookalike.server`."""

from pipeline.dev.lookalike.server import (
    Lookalike,
    LookalikeConfig,
    LookalikeError,
    ThreadedLookalike,
    main,
    run_in_thread,
)
from pipeline.dev.lookalike.world import Chat, Message, World, WorldError

__all__ = [
    "Chat",
    "Lookalike",
    "LookalikeConfig",
    "LookalikeError",
    "Message",
    "ThreadedLookalike",
    "World",
    "WorldError",
    "main",
    "run_in_thread",
]
