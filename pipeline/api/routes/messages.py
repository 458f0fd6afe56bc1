"""``POST /api/messages``: a message sent by hand (now or at ``send_at``), its idempotency key
and the per-chat limit over manual messages."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Header, Request
from pydantic import ValidationError

from pipeline.api.errors import ApiError
from pipeline.api.models import MessageAccepted, MessageIn
from pipeline.api.outbox import manual_outbound, refusal
from pipeline.api.routes.context import Context, Ctx, operator_of
from pipeline.store.models import ManualMessageRow

# One logger for every route, whichever module it is in.
log = logging.getLogger("pipeline.api.routes")

__all__ = ["post_message"]


async def post_message(
    body: MessageIn,
    request: Request,
    ctx: Ctx,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"^[\x21-\x7e]+$",
            description="a retried POST with the same key creates no second message",
        ),
    ] = None,
) -> MessageAccepted:
    """Send ``text`` to ``chat_id`` by hand (kind ``manual`` on wa.outbound), now or at
    ``send_at``. What the sink would refuse (``status@broadcast``, a blank text...) is 422
    naming the field. Over the chat's per-minute limit (the account's
    ``rate_chat_per_minute``, else WABOT_RATE_CHAT_PER_MINUTE; counted over manual messages
    due in the 60 s up to ``send_at``) the answer is 429 unless ``override_limits`` is true.

    ``Idempotency-Key``: the same key with the same request again answers as the first time
    and sends nothing new; with another request it is 422 ``idempotency_key_reused``."""
    operator = operator_of(request)
    key = f"{operator}|{idempotency_key}" if idempotency_key else None
    fingerprint = _fingerprint(body)
    if key is not None:
        existing = await ctx.store.manual_by_key(key)
        if existing is not None:
            return _replayed(existing, fingerprint)
    account_id = body.account_id
    chat = await ctx.store.chat(body.chat_id)
    if chat is None and account_id is None:
        raise ApiError(
            404,
            "unknown_chat",
            "no message of this chat is in the store; give account_id to write first",
            "chat_id",
        )
    account_id = account_id or (chat.account_id if chat is not None else None)
    if not account_id:
        raise ApiError(422, "invalid", "account_id: the chat's account is unknown", "account_id")
    outbound_id = (
        "manual-" + hashlib.sha256(key.encode()).hexdigest()[:24]
        if key
        else "manual-" + uuid.uuid4().hex[:24]
    )
    try:
        message = manual_outbound(outbound_id, body.chat_id, account_id, body.text)
    except ValidationError as exc:
        field, reason = refusal(exc)
        raise ApiError(422, "invalid", reason, field) from None
    now = datetime.now(UTC)
    send_at = max(body.send_at, now) if body.send_at else now
    if send_at - now > timedelta(days=365):
        raise ApiError(422, "invalid", "send_at: at most a year ahead", "send_at")
    if not body.override_limits:
        await _check_chat_limit(ctx, body.chat_id, account_id, send_at)
    row, created = await ctx.store.add_manual(
        ManualMessageRow(
            outbound_id=outbound_id,
            idempotency_key=key,
            request_sha256=fingerprint,
            chat_id=body.chat_id,
            account_id=account_id,
            text=body.text,
            priority=body.priority,
            send_at=send_at,
            # Due now: this request produces it ("sending" keeps the scheduler off it).
            state="sending" if send_at <= now else "scheduled",
            created_at=now,
            operator=operator,
        )
    )
    if not created:  # a retry with the same key raced this one and stored first
        return _replayed(row, fingerprint)
    if row.state == "sending":
        try:
            await ctx.outbox.outbound(message)
        except Exception as exc:
            # Stored: the scheduler produces it when the broker is back.
            log.warning("manual message %s held: %s", row.outbound_id, type(exc).__name__)
            await ctx.store.mark_held(row.outbound_id)
            row.state = "scheduled"
        else:
            await ctx.store.mark_produced(row.outbound_id)
            row.state = "produced"
    else:
        ctx.scheduler.wake()
    log.info(
        "manual message %s for %s by %s (%s, priority %d)",
        row.outbound_id,
        row.chat_id,
        operator,
        row.state,
        row.priority,
    )
    return _accepted(row)


def _fingerprint(body: MessageIn) -> str:
    """64 hex digits of SHA-256 over the canonical request: the method, the path and the
    body as validated (defaults filled in, ids canonical, ``send_at`` in UTC), as JSON with
    sorted keys. Two bodies that mean the same message have the same fingerprint."""
    canonical = json.dumps(
        {"method": "POST", "path": "/api/messages", "body": body.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replayed(row: ManualMessageRow, fingerprint: str) -> MessageAccepted:
    """The first answer to a retried request; 422 when the key came with another request
    (rows stored before fingerprints were kept match any)."""
    if row.request_sha256 is not None and row.request_sha256 != fingerprint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was sent with another request; use a new key for a new message",
            "header.Idempotency-Key",
        )
    return _accepted(row)


def _accepted(row: ManualMessageRow) -> MessageAccepted:
    state: Literal["scheduled", "produced", "failed"] = "scheduled"  # or "sending"
    if row.state == "produced":
        state = "produced"
    elif row.state == "failed":
        state = "failed"
    return MessageAccepted(
        outbound_id=row.outbound_id, state=state, send_at=row.send_at, priority=row.priority
    )


async def _check_chat_limit(ctx: Context, chat_id: str, account_id: str, at: datetime) -> None:
    account = await ctx.store.account(account_id)
    limit = ctx.settings.rate_chat_per_minute
    if account is not None and account.rate_chat_per_minute is not None:
        limit = account.rate_chat_per_minute
    if limit <= 0:
        return
    count = await ctx.store.manual_count(chat_id, at - timedelta(seconds=60), at)
    if count >= limit:
        raise ApiError(
            429,
            "chat_rate_limited",
            f"{limit} manual messages a minute in this chat already; wait, or send with "
            "override_limits: true",
            "chat_id",
            headers={"Retry-After": "60"},
        )
