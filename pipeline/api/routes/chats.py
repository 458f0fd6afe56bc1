"""``/api/chats``: the chats, a chat's messages with their delivery status, pause and resume,
and the chat's profile."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query, Request

from pipeline.api.errors import ApiError
from pipeline.api.models import (
    Chat,
    ChatPage,
    ChatProfile,
    ChatProfileIn,
    ControlAccepted,
    Message,
    MessagePage,
    PauseIn,
)
from pipeline.api.queries import Cursor, InvalidCursor
from pipeline.api.routes.context import (
    ChatPath,
    Ctx,
    known_chat,
    operator_of,
    send_control,
    valid_id,
)
from pipeline.store.models import ManualMessageRow
from schemas import ChatControl

# One logger for every route, whichever module it is in.
log = logging.getLogger("pipeline.api.routes")

__all__ = [
    "chat_messages",
    "get_chat_profile",
    "list_chats",
    "pause_chat",
    "put_chat_profile",
    "resume_chat",
]


async def list_chats(
    ctx: Ctx,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="text in a message")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ChatPage:
    """Chats, the most recent message first, ``limit`` a page; ``q`` keeps the chats with
    a message containing it (case-insensitive)."""
    if q is not None and "\x00" in q:
        raise ApiError(422, "invalid", "query.q: must not contain NUL characters", "query.q")
    try:
        after = Cursor.decode(cursor) if cursor else None
    except InvalidCursor as exc:
        raise ApiError(422, "invalid", f"query.cursor: {exc}", "query.cursor") from None
    rows, following = await ctx.store.chats(q=q, cursor=after, limit=limit)
    return ChatPage(
        chats=[Chat.model_validate(row, from_attributes=True) for row in rows],
        next_cursor=following.encode() if following else None,
    )


async def chat_messages(
    ctx: Ctx,
    chat_id: ChatPath,
    before: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=1000,
            description="a time with a zone (messages older than it), or the `next_before` "
            "of the previous page",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MessagePage:
    """The chat's messages, newest first, with their delivery status (``scheduled`` for a
    manual message still held, those first on the first page; ``failed`` with its
    ``failure_reason`` for one that could never be sent, at its ``send_at``)."""
    chat_id = valid_id(chat_id, "chat_id")
    bound = _before(before)
    await known_chat(ctx, chat_id)
    rows = await ctx.store.messages(chat_id, before=bound, limit=limit)
    failed = await ctx.store.failed_manual(chat_id, before=bound, limit=limit)
    held = [] if before is not None else await ctx.store.scheduled(chat_id)
    stored = [
        Message(
            id=row.id,
            direction="in" if row.direction == "in" else "out",
            at=row.at,
            text=row.text,
            kind=row.kind,
            type=row.type,
            event=row.event,
            sender_id=row.sender_id,
            sender_name=row.sender_name,
            outbound_id=row.outbound_id,
            turn_id=row.turn_id,
            priority=priority,
            delivery_status=row.delivery_status,
            sent_at=row.sent_at,
            delivered_at=row.delivered_at,
            read_at=row.read_at,
            failed_at=row.failed_at,
            failure_reason=row.failure_reason,
        )
        for row, priority in rows
    ]
    seen = {m.id for m in stored}
    stored += [_manual(m, "failed") for m in failed if f"out|{m.outbound_id}" not in seen]
    stored.sort(key=lambda m: (m.at or _EPOCH, m.id), reverse=True)
    page = stored[:limit]
    last = page[-1] if len(page) == limit else None
    following = Cursor(last.at or _EPOCH, last.id).encode() if last is not None else None
    return MessagePage(
        chat_id=chat_id,
        chat_name=await ctx.store.chat_name(chat_id),
        messages=[_manual(m, "scheduled") for m in held] + page,
        next_before=following,
    )


def _manual(row: ManualMessageRow, status: str) -> Message:
    """A manual message the archive has no row of: held (``scheduled``) or ``failed``."""
    return Message(
        id=f"out|{row.outbound_id}",
        direction="out",
        at=row.send_at,
        text=row.text,
        kind="manual",
        type=None,
        event=None,
        sender_id=None,
        outbound_id=row.outbound_id,
        turn_id=None,
        priority=row.priority,
        delivery_status=status,
        sent_at=None,
        delivered_at=None,
        read_at=None,
        failed_at=row.failed_at,
        failure_reason=row.failure_reason,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _before(value: str | None) -> datetime | Cursor | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            return Cursor.decode(value)
        except InvalidCursor:
            raise ApiError(
                422, "invalid", "query.before: not a time nor a next_before", "query.before"
            ) from None
    if parsed.tzinfo is None:
        raise ApiError(422, "invalid", "query.before: needs a time zone", "query.before")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ApiError(
            422,
            "invalid",
            "query.before: out of range: must be within years 1 to 9999 in UTC",
            "query.before",
        ) from None


async def pause_chat(
    body: PauseIn, request: Request, ctx: Ctx, chat_id: ChatPath
) -> ControlAccepted:
    """Keep the bot quiet in the chat for ``minutes`` (chat.control ``pause``)."""
    chat_id = valid_id(chat_id, "chat_id")
    await known_chat(ctx, chat_id)
    until = datetime.now(UTC) + timedelta(minutes=body.minutes)
    await send_control(
        ctx,
        ChatControl(action="pause", chat_id=chat_id, until=until, operator=operator_of(request)),
    )
    await ctx.store.save_chat_profile(chat_id, paused_until=until, updated_by=operator_of(request))
    log.info("chat %s paused until %s by %s", chat_id, until.isoformat(), operator_of(request))
    return ControlAccepted(chat_id=chat_id, action="pause", paused_until=until)


async def resume_chat(request: Request, ctx: Ctx, chat_id: ChatPath) -> ControlAccepted:
    """End the chat's pause (chat.control ``resume``); an owner takeover's pause ends too."""
    chat_id = valid_id(chat_id, "chat_id")
    await known_chat(ctx, chat_id)
    await send_control(
        ctx, ChatControl(action="resume", chat_id=chat_id, operator=operator_of(request))
    )
    await ctx.store.save_chat_profile(chat_id, paused_until=None, updated_by=operator_of(request))
    log.info("chat %s resumed by %s", chat_id, operator_of(request))
    return ControlAccepted(chat_id=chat_id, action="resume")


async def get_chat_profile(ctx: Ctx, chat_id: ChatPath) -> ChatProfile:
    """What operators set for the chat (defaults when nothing was set)."""
    chat_id = valid_id(chat_id, "chat_id")
    row = await ctx.store.chat_profile(chat_id)
    if row is None:
        await known_chat(ctx, chat_id)
        return ChatProfile(
            chat_id=chat_id, persona=None, enabled=True, paused_until=None, updated_at=None
        )
    return ChatProfile.model_validate(row, from_attributes=True)


async def put_chat_profile(
    body: ChatProfileIn, request: Request, ctx: Ctx, chat_id: ChatPath
) -> ChatProfile:
    """Set the chat's persona (its system prompt; none: the account's) and ``enabled``."""
    chat_id = valid_id(chat_id, "chat_id")
    await known_chat(ctx, chat_id)
    await send_control(
        ctx,
        ChatControl(
            action="profile",
            chat_id=chat_id,
            persona=body.persona or None,
            enabled=body.enabled,
            operator=operator_of(request),
        ),
    )
    row = await ctx.store.save_chat_profile(
        chat_id, persona=body.persona or None, enabled=body.enabled, updated_by=operator_of(request)
    )
    log.info("chat %s profile set by %s", chat_id, operator_of(request))
    return ChatProfile.model_validate(row, from_attributes=True)
