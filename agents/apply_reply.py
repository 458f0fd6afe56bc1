"""apply_reply: llm.results -> wa.outbound and llm.calls, updating the window in stream context.

The second half of answering a turn (see agents/respond.py for why it is split): it
appends the turn and its reply to the chat's window, adds the tokens to the day's
budget, emits one OutboundMessage per part of the reply and the LLMCall records, then
tells the respond agent that the chat may go on. A result for a turn already in the
window (a replay after a crash) changes no table and emits the same outbound ids
again, which the gateway's sink recognises as sent.

Times are the turn's own (its last message's ``received_at``): the window's idle expiry
and the token budget's day come out the same in a replay as in the live run. In a
replay with ``--context original`` the window gets the reply the live bot really sent
for the turn (``original_replies``), so every turn is judged on the real conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from agents.progress import ProgressBoard
from schemas import LLMResult, OutboundMessage
from tables import ConversationWindow, TypedTable, usage_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowConfig:
    """Built from the settings by :func:`pipeline.config.stages.window_config`; no defaults here."""

    max_entries: int
    token_budget: int
    idle_expiry_s: float


def outbound_id(turn_id: str, part: int) -> str:
    """Deterministic: a retried or replayed turn yields the same ids."""
    return f"{turn_id}-{part}"


def register(
    app: Any,
    *,
    source: Any,
    outbound: Any,
    llm_calls: Any,
    dlq: Any,
    windows: TypedTable[ConversationWindow],
    token_usage: Any,
    progress: ProgressBoard,
    config: WindowConfig,
    original_replies: Mapping[str, str] | None = None,
) -> Any:
    """Attach the apply_reply agent to ``app``; ``original_replies`` maps turn ids to the
    replies recorded in the live run (replay ``--context original``); return the agent."""

    @app.agent(source, name="apply_reply")
    async def apply_reply(stream: Any) -> None:
        async for event in stream.events():
            try:
                result = LLMResult.model_validate_json(event.value)
            except (ValidationError, ValueError) as exc:
                await dead_letter(dlq, event, "apply_reply", f"invalid result: {exc}", exc)
                continue
            turn = result.turn
            with traced(turn.trace_id):
                window = windows.get(turn.chat_id) or ConversationWindow()
                fresh = not window.is_applied(turn.turn_id)
                # Outputs first, tables second: dying between the two replays this
                # result, which re-emits the same outbound ids (the sink skips them);
                # the other order could record a reply that was never sent.
                key = turn.chat_id.encode()
                for index, text in enumerate(result.parts):
                    await outbound.send(
                        key=key,
                        value=OutboundMessage(
                            outbound_id=outbound_id(turn.turn_id, index),
                            chat_id=turn.chat_id,
                            account_id=turn.account_id,
                            text=text,
                            turn_id=turn.turn_id,
                            part=index,
                            parts=len(result.parts),
                            reply_to_message_id=turn.message_ids[-1] if turn.is_group else None,
                            kind="reply" if result.status == "ok" else "fallback",
                            received_at=turn.last_received_at,
                            trace_id=turn.trace_id,
                        ),
                    )
                if not fresh:
                    log.info("turn %s was already applied; outbound ids re-emitted", turn.turn_id)
                else:
                    for call in result.calls:
                        await llm_calls.send(key=key, value=call)
                    at = turn.last_received_at
                    reply = result.reply
                    if original_replies is not None:
                        reply = original_replies.get(turn.turn_id, reply)
                    windows.put(
                        turn.chat_id,
                        window.with_exchange(
                            turn_id=turn.turn_id,
                            seq=turn.seq,
                            user=turn.text,
                            reply=reply,
                            now=at.timestamp(),
                            idle_expiry_s=config.idle_expiry_s,
                            max_entries=config.max_entries,
                            token_budget=config.token_budget,
                        ),
                    )
                    if result.total_tokens:
                        day = at.astimezone(UTC).date().isoformat()
                        usage = usage_key(day, event.message.partition)
                        token_usage[usage] += result.total_tokens
                    log.info(
                        "reply to turn %s seq=%d: %d part(s), %s",
                        turn.turn_id,
                        turn.seq,
                        len(result.parts),
                        result.status,
                    )
            progress.applied(turn.chat_id)

    return apply_reply
