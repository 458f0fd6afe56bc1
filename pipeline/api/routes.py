"""The endpoints. Every route under ``/api`` needs a token (:class:`pipeline.api.auth.Auth`);
``/healthz`` and ``/readyz`` are open, ``/metrics`` is open while WABOT_METRICS_PUBLIC is true.

Changes are produced to Kafka (:mod:`pipeline.api.outbox`) and answered 202: the bot applies
them when its guard (controls) or its sink (messages) reads them. The API also records what
operators set (``chat_profiles``, ``accounts``, ``manual_messages``) so it can show it back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import TypeAdapter, ValidationError

from pipeline.api.auth import Auth, bearer_scheme
from pipeline.api.errors import ApiError, ErrorBody
from pipeline.api.models import (
    AccountList,
    AccountProfile,
    AccountProfileIn,
    Chat,
    ChatIdIn,
    ChatPage,
    ChatProfile,
    ChatProfileIn,
    ControlAccepted,
    GatewayStatus,
    Health,
    Message,
    MessageAccepted,
    MessageIn,
    MessagePage,
    PauseIn,
    Readiness,
    Stats,
    WhatsAppStatus,
)
from pipeline.api.outbox import Outbox, Scheduler, manual_outbound, refusal
from pipeline.api.queries import ApiStore, Cursor, InvalidCursor
from pipeline.api.tail import TopicTail
from pipeline.config.settings import Settings
from pipeline.gateway.qr import png_qr
from pipeline.store.models import AccountRow, ManualMessageRow
from schemas import ChatControl

log = logging.getLogger(__name__)

__all__ = ["OPEN_PATHS", "Context", "install_routes"]

#: Paths anyone may call (``/metrics`` too while WABOT_METRICS_PUBLIC is true).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


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

_ERRORS: dict[int | str, dict[str, Any]] = {
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


def _valid_id(value: str, field: str) -> str:
    """A path id checked like a body's: canonical, or 422 naming ``field``."""
    try:
        return _CHAT_ID.validate_python(value)
    except ValidationError:
        raise ApiError(422, "invalid", f"{field}: not a WhatsApp id", field) from None


def _operator(request: Request) -> str:
    return str(getattr(request.state, "token", "-"))


def _unavailable_broker(what: str, exc: Exception) -> ApiError:
    log.warning("broker unavailable while producing %s: %s", what, type(exc).__name__)
    return ApiError(
        503,
        "broker_unavailable",
        "the broker did not take the record; nothing was changed, try again",
        headers={"Retry-After": "5"},
    )


async def _known_chat(ctx: Context, chat_id: str) -> str:
    """The chat's account id; 404 when the store has never seen the chat."""
    row = await ctx.store.chat(chat_id)
    if row is None:
        raise ApiError(404, "unknown_chat", "no message of this chat is in the store", "chat_id")
    return row.account_id or ""


# -- open ------------------------------------------------------------------------------
async def healthz() -> Health:
    """The process answers (liveness)."""
    return Health(status="ok")


async def readyz(ctx: Ctx) -> Any:
    """Ready when the store answers a query and the broker a metadata request (503 with the
    same body otherwise); ``gateway_state`` is the latest state in the store, for information."""
    problems = []
    store_ok = True
    state = None
    try:
        await ctx.store.ping()
        gateways = await ctx.store.gateway_states()
        state = gateways[0].state if gateways else None
    except Exception as exc:
        store_ok = False
        problems.append(f"store: {type(exc).__name__}")
    broker_ok = await ctx.outbox.broker_ok()
    if not broker_ok:
        problems.append("broker: no answer to a metadata request")
    body = Readiness(
        ready=store_ok and broker_ok,
        store=store_ok,
        broker=broker_ok,
        gateway_state=state,
        problems=problems,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


async def metrics(ctx: Ctx) -> Response:
    """Prometheus text format: the API's requests by route and status, and latencies."""
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


# -- behind the token --------------------------------------------------------------------
def install_routes(app: FastAPI, auth: Auth, *, metrics_public: bool) -> None:
    """Add every route to ``app`` itself (not through an included router, so ``app.routes``
    lists them all: the auth test walks it). Routes under ``/api`` carry the token check."""
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health, tags=["health"])
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready: see problems"}},
        tags=["health"],
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=Response,
        tags=["health"],
        dependencies=[] if metrics_public else [Depends(bearer_scheme), Depends(auth)],
        responses={} if metrics_public else _ERRORS,
    )
    protected = [Depends(bearer_scheme), Depends(auth)]

    def add(path: str, endpoint: Any, method: str, tag: str, **options: Any) -> None:
        app.add_api_route(
            "/api" + path,
            endpoint,
            methods=[method],
            dependencies=protected,
            responses={**_ERRORS, **options.pop("responses", {})},
            tags=[tag],
            **options,
        )

    add(
        "/messages",
        post_message,
        "POST",
        "messages",
        status_code=202,
        response_model=MessageAccepted,
    )
    add("/chats", list_chats, "GET", "chats", response_model=ChatPage)
    add("/chats/{chat_id}/messages", chat_messages, "GET", "chats", response_model=MessagePage)
    add(
        "/chats/{chat_id}/pause",
        pause_chat,
        "POST",
        "chats",
        status_code=202,
        response_model=ControlAccepted,
    )
    add(
        "/chats/{chat_id}/resume",
        resume_chat,
        "POST",
        "chats",
        status_code=202,
        response_model=ControlAccepted,
    )
    add("/chats/{chat_id}/profile", get_chat_profile, "GET", "chats", response_model=ChatProfile)
    add("/chats/{chat_id}/profile", put_chat_profile, "PUT", "chats", response_model=ChatProfile)
    add("/whatsapp/status", whatsapp_status, "GET", "whatsapp", response_model=WhatsAppStatus)
    add(
        "/whatsapp/qr",
        whatsapp_qr,
        "GET",
        "whatsapp",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the login QR code"}},
    )
    add("/stats", stats, "GET", "stats", response_model=Stats)
    add("/accounts", list_accounts, "GET", "accounts", response_model=AccountList)
    add(
        "/accounts/{account_id}/profile",
        get_account_profile,
        "GET",
        "accounts",
        response_model=AccountProfile,
    )
    add(
        "/accounts/{account_id}/profile",
        put_account_profile,
        "PUT",
        "accounts",
        response_model=AccountProfile,
    )


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
    operator = _operator(request)
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
    chat_id = _valid_id(chat_id, "chat_id")
    bound = _before(before)
    await _known_chat(ctx, chat_id)
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


async def _control(ctx: Context, control: ChatControl) -> None:
    try:
        await ctx.outbox.control(control)
    except Exception as exc:
        raise _unavailable_broker("a control", exc) from None


async def pause_chat(
    body: PauseIn, request: Request, ctx: Ctx, chat_id: ChatPath
) -> ControlAccepted:
    """Keep the bot quiet in the chat for ``minutes`` (chat.control ``pause``)."""
    chat_id = _valid_id(chat_id, "chat_id")
    await _known_chat(ctx, chat_id)
    until = datetime.now(UTC) + timedelta(minutes=body.minutes)
    await _control(
        ctx, ChatControl(action="pause", chat_id=chat_id, until=until, operator=_operator(request))
    )
    await ctx.store.save_chat_profile(chat_id, paused_until=until, updated_by=_operator(request))
    log.info("chat %s paused until %s by %s", chat_id, until.isoformat(), _operator(request))
    return ControlAccepted(chat_id=chat_id, action="pause", paused_until=until)


async def resume_chat(request: Request, ctx: Ctx, chat_id: ChatPath) -> ControlAccepted:
    """End the chat's pause (chat.control ``resume``); an owner takeover's pause ends too."""
    chat_id = _valid_id(chat_id, "chat_id")
    await _known_chat(ctx, chat_id)
    await _control(ctx, ChatControl(action="resume", chat_id=chat_id, operator=_operator(request)))
    await ctx.store.save_chat_profile(chat_id, paused_until=None, updated_by=_operator(request))
    log.info("chat %s resumed by %s", chat_id, _operator(request))
    return ControlAccepted(chat_id=chat_id, action="resume")


async def get_chat_profile(ctx: Ctx, chat_id: ChatPath) -> ChatProfile:
    """What operators set for the chat (defaults when nothing was set)."""
    chat_id = _valid_id(chat_id, "chat_id")
    row = await ctx.store.chat_profile(chat_id)
    if row is None:
        await _known_chat(ctx, chat_id)
        return ChatProfile(
            chat_id=chat_id, persona=None, enabled=True, paused_until=None, updated_at=None
        )
    return ChatProfile.model_validate(row, from_attributes=True)


async def put_chat_profile(
    body: ChatProfileIn, request: Request, ctx: Ctx, chat_id: ChatPath
) -> ChatProfile:
    """Set the chat's persona (its system prompt; none: the account's) and ``enabled``."""
    chat_id = _valid_id(chat_id, "chat_id")
    await _known_chat(ctx, chat_id)
    await _control(
        ctx,
        ChatControl(
            action="profile",
            chat_id=chat_id,
            persona=body.persona or None,
            enabled=body.enabled,
            operator=_operator(request),
        ),
    )
    row = await ctx.store.save_chat_profile(
        chat_id, persona=body.persona or None, enabled=body.enabled, updated_by=_operator(request)
    )
    log.info("chat %s profile set by %s", chat_id, _operator(request))
    return ChatProfile.model_validate(row, from_attributes=True)


async def whatsapp_status(ctx: Ctx) -> WhatsAppStatus:
    """Each gateway's latest state from the store, newest first."""
    rows = await ctx.store.gateway_states()
    gateways = [
        GatewayStatus(
            gateway=row.gateway,
            account_id=row.account_id,
            state=row.state,
            reason=row.reason,
            at=row.at,
            qr_available=row.state == "qr" and row.gateway in ctx.tail.qr,
        )
        for row in rows
    ]
    return WhatsAppStatus(state=gateways[0].state if gateways else None, gateways=gateways)


async def whatsapp_qr(ctx: Ctx) -> Response:
    """The login QR as a PNG while a gateway waits for a scan (its latest state is ``qr``);
    404 ``no_qr`` otherwise. Whoever scans it takes the WhatsApp session over."""
    for row in await ctx.store.gateway_states():
        found = ctx.tail.qr.get(row.gateway)
        if row.state == "qr" and found is not None:
            return Response(
                png_qr(found[0]), media_type="image/png", headers={"Cache-Control": "no-store"}
            )
    raise ApiError(404, "no_qr", "no gateway is waiting for a QR scan")


async def stats(ctx: Ctx) -> Stats:
    """The dashboard's numbers (see the response schema)."""
    numbers = await ctx.store.stats(datetime.now(UTC))
    gateways = await ctx.store.gateway_states()
    return Stats(
        **numbers,
        dlq={"count": await ctx.tail.dlq_count(), "latest": list(ctx.tail.dead_letters)[::-1]},
        gateway_state=gateways[0].state if gateways else None,
    )


def _account(account_id: str, row: AccountRow | None) -> AccountProfile:
    if row is None:
        return AccountProfile(
            account_id=account_id,
            system_prompt=None,
            model=None,
            rate_chat_per_minute=None,
            enabled=True,
            updated_at=None,
        )
    return AccountProfile.model_validate(row, from_attributes=True)


async def list_accounts(ctx: Ctx) -> AccountList:
    """Every account the store knows, with its profile (defaults when none was set)."""
    return AccountList(accounts=[_account(a, row) for a, row in await ctx.store.accounts()])


async def get_account_profile(ctx: Ctx, account_id: AccountPath) -> AccountProfile:
    account_id = _valid_id(account_id, "account_id")
    await _known_account(ctx, account_id)
    return _account(account_id, await ctx.store.account(account_id))


async def _known_account(ctx: Context, account_id: str) -> None:
    """404 when the store knows no such account (no profile, chat or gateway event)."""
    if not await ctx.store.account_known(account_id):
        raise ApiError(404, "unknown_account", "the store knows no such account", "account_id")


async def put_account_profile(
    body: AccountProfileIn, request: Request, ctx: Ctx, account_id: AccountPath
) -> AccountProfile:
    """Set the profile of an account the store knows (404 ``unknown_account`` otherwise,
    as for GET). It reaches the bot as a chat.control ``account_profile``
    on every partition: ``system_prompt`` (a chat's persona still wins in its chat),
    ``model`` (the LLM model the account's chats are answered with), ``rate_chat_per_minute``
    (the bot's replies and, here, manual messages per chat and minute) and ``enabled``; a
    field left out (null) goes back to the worker's settings."""
    account_id = _valid_id(account_id, "account_id")
    await _known_account(ctx, account_id)
    await _control(
        ctx,
        ChatControl(
            action="account_profile",
            account_id=account_id,
            persona=body.system_prompt or None,
            enabled=body.enabled,
            model=body.model,
            rate_chat_per_minute=body.rate_chat_per_minute,
            operator=_operator(request),
        ),
    )
    row = await ctx.store.save_account(
        account_id,
        system_prompt=body.system_prompt or None,
        model=body.model,
        rate_chat_per_minute=body.rate_chat_per_minute,
        enabled=body.enabled,
        updated_by=_operator(request),
    )
    log.info("account %s profile set by %s", account_id, _operator(request))
    return _account(account_id, row)
