"""Bearer tokens in front of the worker's and the gateway's web server.

Faust's web server serves our views (``/health``, ``/gateway/status``, the login QR and a
screenshot of the bot's WhatsApp, which shows customers' chats) and Faust's own
blueprints, among them ``/table/<name>/<key>/``, which reads any table (conversation
windows included). Whoever scans the QR takes the account over. So every path but
``/health`` (and ``/metrics`` while WABOT_METRICS_PUBLIC is true) needs
``Authorization: Bearer <token>``: 401 without one, 403 with a wrong one.

Tokens come from WABOT_API_TOKENS (name -> secret). With none configured, one is made
once and kept in ``<data_dir>/api-token`` (mode 0600), so a development setup is locked
too and its owner can read the token from the file; the log names the file, never a
token. Comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.config.settings import Settings

log = logging.getLogger(__name__)

#: Paths anyone may read: the liveness probe.
OPEN_PATHS = frozenset({"/health", "/health/"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_file(settings: Settings) -> Path:
    """Where the generated token lives when WABOT_API_TOKENS is empty."""
    return settings.data_dir / "api-token"


def api_tokens(settings: Settings) -> dict[str, str]:
    """Token name -> secret: WABOT_API_TOKENS, else the one in :func:`token_file`
    (made on first use, 32 random bytes as hex, file mode 0600)."""
    if settings.api_tokens:
        return {name: value.get_secret_value() for name, value in settings.api_tokens.items()}
    path = token_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        log.warning("no WABOT_API_TOKENS set: made a token for the web endpoints in %s", path)
    return {"local": path.read_text().strip()}


def token_name(header: str | None, tokens: Mapping[str, str]) -> str | None:
    """The name of the token in an ``Authorization: Bearer ...`` header, or None. Every
    configured token is compared (constant time), so timing tells nothing of which."""
    if not header or not header.startswith("Bearer "):
        return None
    given = header.removeprefix("Bearer ").strip().encode()
    found = None
    for name, secret in tokens.items():
        if hmac.compare_digest(given, secret.encode()):
            found = name
    return found


def bearer_middleware(settings: Settings) -> Any:
    """An aiohttp middleware (for Faust's ``web_application_options``) that lets a request
    through to any path but the open ones only with a configured token."""
    open_paths = OPEN_PATHS | ({"/metrics", "/metrics/"} if settings.metrics_public else set())
    tokens: dict[str, str] = {}  # read at the first request: a command that serves no web
    # (db, replay, rebuild-tables) must not make a token file

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        if not tokens:
            tokens.update(api_tokens(settings))
        header = request.headers.get("Authorization")
        if not header:
            return _refuse(401, "unauthorized", "send Authorization: Bearer <token>")
        if token_name(header, tokens) is None:
            return _refuse(403, "forbidden", "the token is not valid")
        return await handler(request)

    return require_token


def _refuse(status: int, code: str, message: str) -> web.Response:
    response = web.json_response({"code": code, "message": message}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response
