"""One call (or a decision not to call) to the LLM endpoint (topic ``llm.calls``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Record
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["LLMCall", "LLMCallStatus"]

LLMCallStatus = Literal["ok", "retry", "error", "fallback", "skipped"]


class LLMCall(Record):
    """Model, tokens, latency and outcome of one attempt, for cost and health analytics.

    v2 adds ``cut_chars`` and ``dropped_entries``: what of the turn's prompt was not sent.
    """

    schema_version: int = Field(2, ge=1)

    call_id: str = Field(min_length=1)
    turn_id: str = Field(min_length=1)
    chat_id: ChatId
    model: str
    base_url: str
    status: LLMCallStatus
    attempt: int = Field(1, ge=1)
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    latency_ms: float = Field(0.0, ge=0)
    http_status: int | None = Field(None, ge=100, le=599)
    error: str | None = None
    decision: str | None = Field(
        None, description="why a call was skipped, e.g. rate_limited_chat, token_budget"
    )
    cut_chars: int = Field(
        0,
        ge=0,
        description="characters cut from messages longer than WABOT_LLM_MAX_MESSAGE_CHARS "
        "before the call (the same for every call of a turn)",
    )
    dropped_entries: int = Field(
        0,
        ge=0,
        description="oldest window entries left out of this call's prompt because the "
        "endpoint said the prompt was too long for the model's context",
    )
    at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _explained(self) -> Self:
        if self.status == "skipped" and not self.decision:
            raise ValueError("a skipped call needs a decision saying why")
        if self.status == "error" and not self.error:
            raise ValueError("a call with status error needs the error")
        return self
