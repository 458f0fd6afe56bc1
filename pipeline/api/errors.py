"""Every error the API answers is JSON ``{code, message, field?}``.

``code`` is a short word a program can branch on (``invalid``, ``malformed_json``,
``duplicate_key``, ``unauthorized``, ``forbidden``, ``rate_limited``, ``chat_rate_limited``,
``not_found``, ``unknown_chat``, ``unknown_account``, ``idempotency_key_reused``,
``body_too_large``, ``store_unavailable``, ``broker_unavailable``, ...),
``message`` a sentence for a person, ``field`` the request field at fault (``text``,
``send_at``, ``query.limit``, ``header.Idempotency-Key``), when there is one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.store.writer import is_unavailable

log = logging.getLogger(__name__)

#: The largest request body accepted, bytes (413 above).
MAX_BODY_BYTES = 64 * 1024


class ErrorBody(BaseModel):
    """The body of every error response."""

    code: str
    message: str
    field: str | None = None


class ApiError(Exception):
    """An error answered as ``status`` with an :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(code=code, message=message, field=field).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "text")`` -> ``text``; ``("query", "limit")`` -> ``query.limit``."""
    where, *rest = loc or ("body",)
    if where == "body":
        return ".".join(str(part) for part in rest) or "body"
    return ".".join(str(part) for part in (where, *rest))


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid", "type": "invalid"}
    if first.get("type") == "json_invalid":
        return error_response(
            400, "malformed_json", f"the body is not valid JSON: {first.get('msg', '')}", "body"
        )
    field = _field(tuple(first.get("loc", ())))
    reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        reason = "unknown field"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, "invalid", f"{field}: {reason}{more}", field)


def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


_HTTP_CODES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code
    headers = dict(exc.headers) if exc.headers else None
    field = "body" if exc.status_code == 413 else None
    return error_response(exc.status_code, code, message, field, headers=headers)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_unavailable(exc):
        log.warning("store unavailable: %s", type(exc).__name__)
        return error_response(
            503,
            "store_unavailable",
            "the conversation store cannot be reached now; try again shortly",
            headers={"Retry-After": "5"},
        )
    # Handlers run outside the ``except`` that caught ``exc`` (sync ones in a thread), so
    # the exception is passed explicitly: log.exception would log "NoneType: None".
    log.error("unexpected error in %s %s", request.method, _route_path(request), exc_info=exc)
    return error_response(500, "internal", "an unexpected error; see the API's log")


def _route_path(request: Request) -> str:
    """The route's template (``/api/chats/{chat_id}/messages``), never the path itself: a
    path or query may carry a chat id or text that does not belong in an INFO log."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "?"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    # Raised by the store: handled here, not by Starlette's last-resort handler (which
    # answers, then re-raises, and the server logs a traceback per request while a
    # database is down).
    for kind in (SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(kind, _unexpected)
    app.add_exception_handler(Exception, _unexpected)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before any of it
    is parsed, whether it announces its length or streams chunks."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # An HTTPException passes FastAPI's body parsing as it is (anything
                    # else would become a 400) and reaches :func:`_http`.
                    raise HTTPException(413, f"the body is larger than {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "body_too_large", f"the body is larger than {self.limit} bytes", "body"
        )
        await response(scope, receive, send)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def duplicate_key(body: bytes) -> str | None:
    """The first key found twice in one object of the JSON ``body`` (at any depth); None
    when there is none, or when ``body`` is not JSON (FastAPI's parse then says why)."""
    try:
        json.loads(body, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None
    return None


class JsonRoute(APIRoute):
    """A route whose JSON body may not hold a key twice (400 ``duplicate_key`` naming it).

    ``json.loads`` keeps the last of two equal keys, so ``{"chat_id": a, "chat_id": b}``
    would be read as chat ``b`` whatever the client meant (RFC 8259 leaves the meaning of
    such an object open); the API refuses to guess. Set as the app's ``route_class``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                try:
                    # Read once: Starlette keeps the bytes for FastAPI's own parse.
                    body = await request.body()
                except ClientDisconnect:  # gone mid-body (timed out): nobody reads this
                    raise HTTPException(400, "the client left before its body arrived") from None
                key = duplicate_key(body)
                if key is not None:
                    raise ApiError(
                        400,
                        "duplicate_key",
                        f"{key}: the key appears twice in one object of the body",
                        key,
                    )
            return await handle(request)

        return checked


Handler = Callable[[Request], Awaitable[Any]]
