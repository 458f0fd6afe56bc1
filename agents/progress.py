"""Which turn each chat has finished, shared in-process by respond and apply_reply.

Not an agent. The window table is the truth (``last_applied_seq``); this board only
wakes the respond agent's waiting chat task when apply_reply has applied a reply, so
turn n+1 is sent to the LLM with the reply to turn n in its prompt, without polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class ProgressBoard:
    def __init__(self) -> None:
        self._events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def applied(self, chat_id: str) -> None:
        """apply_reply finished a turn of ``chat_id``: wake whoever waits on the chat."""
        event = self._events.pop(chat_id, None)
        if event is not None:
            event.set()

    async def wait_change(self, chat_id: str, timeout: float) -> None:
        """Sleep until the next applied() of ``chat_id`` or ``timeout`` seconds."""
        event = self._events[chat_id]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
