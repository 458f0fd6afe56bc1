"""ping: the health-check stage (pipeline.ping -> pipeline.pong).

Each Ping increments a per-key counter in a changelog-backed table and answers with a
Pong carrying the new count. A count that keeps rising across worker restarts shows
that the worker joined the group, recovered its tables and can produce.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.context import traced
from schemas import Ping, Pong

log = logging.getLogger(__name__)


def register(app: Any, source: Any, sink: Any, counts: Any, worker: str) -> Any:
    """Attach the ping agent to ``app``; return the agent."""

    @app.agent(source, name="ping")
    async def ping(stream: Any) -> None:
        async for event in stream.events():
            message: Ping = event.value
            key = event.key.decode() if isinstance(event.key, bytes) else message.key
            with traced(message.trace_id):
                counts[key] += 1
                pong = Pong(key=key, count=counts[key], worker=worker, trace_id=message.trace_id)
                await sink.send(key=key.encode(), value=pong)
                log.info("pong key=%s count=%d", key, pong.count)

    return ping
