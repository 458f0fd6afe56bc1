"""An LLM reply on its way into the conversation window (internal topic ``llm.results``).

The respond agent produces it once the LLM has answered; the apply_reply agent, in
stream context, appends it to the window table and emits the outbound messages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Record
from schemas.llm import LLMCall
from schemas.turn import Turn

__all__ = ["LLMResult"]


class LLMResult(Record):
    """v2: its ``calls`` are LLMCall v2 (``cut_chars``, ``dropped_entries``); v3: its
    ``turn`` is a Turn v2 (``cut_chars``)."""

    schema_version: int = Field(3, ge=1)
    turn: Turn
    reply: str = Field(min_length=1)
    parts: list[str] = Field(min_length=1, description="the reply split for WhatsApp")
    status: Literal["ok", "fallback"]
    calls: list[LLMCall] = Field(default_factory=list)
    total_tokens: int = Field(0, ge=0)
