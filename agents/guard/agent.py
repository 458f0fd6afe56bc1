"""The guard agent: one Faust agent over ``wa.inbound``, ``guard.ticks`` and ``chat.control`` in
one co-partitioned stream, the timer task that produces the ticks, and the rebalance hook that
rescans the open bursts (``register``). What each record becomes is the :class:`Guard`'s
(:mod:`agents.guard.decisions`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from agents.guard.config import GuardConfig, GuardTables, GuardTopics
from agents.guard.decisions import Guard
from agents.guard.timers import now
from schemas import ChatControl, InboundMessage

__all__ = ["register"]

# One logger for the whole stage, whichever module of it writes.
log = logging.getLogger("agents.guard")


def register(
    app: Any,
    *,
    inbound_and_ticks: Any,
    config: GuardConfig,
    tables: GuardTables,
    topics: GuardTopics,
    ticks_topic_name: str,
    control_topic_name: str | None = None,
    count_decision: Callable[[str], None] | None = None,
) -> Guard:
    """Attach the guard agent and its burst timer to ``app``; return the Guard.

    ``count_decision(reason)`` is called for every GuardDecision (the metrics counter)."""
    guard = Guard(config, tables, topics, count_decision)

    @app.agent(inbound_and_ticks, name="guard")
    async def guard_agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                if message.topic == ticks_topic_name:
                    tick = json.loads(event.value)
                    with traced(str(tick.get("trace_id", "-"))):
                        await guard.on_tick(
                            str(tick["chat_id"]), int(tick["generation"]), bool(tick.get("flush"))
                        )
                    continue
                if message.topic == control_topic_name:
                    control = ChatControl.model_validate_json(event.value)
                    with traced(control.trace_id):
                        await guard.on_control(control)
                    continue
                inbound = InboundMessage.model_validate_json(event.value)
            except (ValidationError, ValueError, KeyError, TypeError) as exc:
                await dead_letter(topics.dlq, event, "guard", f"invalid record: {exc}", exc)
                continue
            with traced(inbound.trace_id):
                try:
                    decision = await guard.on_inbound(inbound)
                    log.debug("message %s: %s", inbound.message_id, decision)
                except Exception as exc:  # one bad record must not stop the chat's pipeline
                    log.exception("guard failed on %s", inbound.message_id)
                    await dead_letter(topics.dlq, event, "guard", f"guard error: {exc!r}", exc)

    @app.timer(interval=0.1)
    async def close_quiet_bursts() -> None:
        if guard.timers.rescan and not app.rebalancing:
            guard.timers.rescan = False
            guard.overdue_after_rebalance()
        for due in guard.timers.pop_due(now()):
            tick = {"chat_id": due.chat_id, "generation": due.generation, "trace_id": due.trace_id}
            await topics.ticks.send(key=due.chat_id.encode(), value=json.dumps(tick).encode())

    @app.on_rebalance_complete.connect
    async def _rescan(sender: Any, **kwargs: Any) -> None:
        guard.timers.rescan = True

    return guard
