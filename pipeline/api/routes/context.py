"""What the routes share: the :class:`Context` (one per app), the annotated parameters, the
error answers every route under ``/api`` documents, and the checks and writes several resources
make (a path id, a known chat, the operator, a control produced)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from pipeline.api.errors import ApiError, ErrorBody
from pipeline.api.models import ChatIdIn
from pipeline.api.outbox import Outbox, Scheduler
from pipeline.api.queries import ApiStore
from pipeline.api.tail import TopicTail
from pipeline.config.settings import Settings
from schemas import ChatControl

# One logger for every route, whichever module it is in.
log = logging.getLogger("pipeline.api.routes")

__all__ = [
    "ERRORS",
    "AccountPath",
    "ChatPath",
    "Context",
    "Ctx",
    "context",
    "known_chat",
    "operator_of",
    "send_control",
    "unavailable_broker",
    "valid_id",
]


@dataclass
class Context:
    """What the routes use; one per app (``app.state.context``)."""

    settings: Settings
    store: ApiStore
    outbox: Outbox
    tail: TopicTail
    scheduler: Scheduler
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


def context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


Ctx = Annotated[Context, Depends(context)]
ChatPath = Annotated[str, Path(min_length=1, max_length=200, description="a chat id")]
AccountPath = Annotated[str, Path(min_length=1, max_length=200, description="an account id")]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "malformed JSON, or a key twice in one object"),
        (401, "no token"),
        (403, "a wrong token"),
        (404, "unknown chat or account"),
        (413, "a body over 64 KiB"),
        (422, "invalid input: the field and the reason"),
        (429, "too many requests (Retry-After)"),
        (503, "the store or the broker cannot be reached"),
    )
}


_CHAT_ID: TypeAdapter[str] = TypeAdapter(ChatIdIn)


def valid_id(value: str, field: str) -> str:
    """A path id checked like a body's: canonical, or 422 naming ``field``."""
    try:
        return _CHAT_ID.validate_python(value)
    except ValidationError:
        raise ApiError(422, "invalid", f"{field}: not a WhatsApp id", field) from None


def operator_of(request: Request) -> str:
    return str(getattr(request.state, "token", "-"))


def unavailable_broker(what: str, exc: Exception) -> ApiError:
    log.warning("broker unavailable while producing %s: %s", what, type(exc).__name__)
    return ApiError(
        503,
        "broker_unavailable",
        "the broker did not take the record; nothing was changed, try again",
        headers={"Retry-After": "5"},
    )


async def known_chat(ctx: Context, chat_id: str) -> str:
    """The chat's account id; 404 when the store has never seen the chat."""
    row = await ctx.store.chat(chat_id)
    if row is None:
        raise ApiError(404, "unknown_chat", "no message of this chat is in the store", "chat_id")
    return row.account_id or ""


async def send_control(ctx: Context, control: ChatControl) -> None:
    try:
        await ctx.outbox.control(control)
    except Exception as exc:
        raise unavailable_broker("a control", exc) from None
