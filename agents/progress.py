"""Which turn each chat has finished, shared in-process by respond and apply_reply.

Not an agent. The window table is the truth (``last_applied_seq``); this board only
wakes the respond agent's waiting chat task when apply_reply has applied a reply, so
turn n+1 is sent to the LLM with the reply to turn n in its prompt, without polling.

A waiter sleeps until its chat changes, a rebalance starts (:meth:`wake_all`: held turns
must notice they are abandoned) or its deadline passes. No periodic re-check: with a
thousand chats waiting behind a busy LLM, a one-second poll each was a thousand window
reads a second, about a tenth of the worker's CPU (profiled).
"""

from __future__ import annotations

import asyncio
import contextlib


class ProgressBoard:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def applied(self, chat_id: str) -> None:
        """apply_reply finished a turn of ``chat_id``: wake whoever waits on the chat."""
        event = self._events.pop(chat_id, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter (a rebalance started)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def wait_change(self, chat_id: str, timeout: float) -> None:
        """Sleep until the next applied() of ``chat_id``, wake_all() or ``timeout`` seconds."""
        event = self._events.get(chat_id)
        if event is None:
            event = self._events[chat_id] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
