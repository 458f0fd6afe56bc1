"""Bearer tokens and the per-token request limit of the operator API.

Tokens are WABOT_API_TOKENS (name -> secret; with none set, the one in
``<data_dir>/api-token``, as for the worker's web views: :mod:`pipeline.api.tokens`). Each
request's ``Authorization: Bearer <token>`` is compared with every token in constant time
(:func:`hmac.compare_digest`): 401 without a token, 403 with a wrong one. Each token may make
``per_minute`` requests a minute (a fixed window per UTC minute; 0: no limit), then 429 with
``Retry-After`` (seconds to the next minute). Only token *names* are ever logged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from fastapi import Request
from fastapi.security import HTTPBearer

from pipeline.api.errors import ApiError
from pipeline.api.tokens import token_name

__all__ = ["Auth", "RequestLimit", "bearer_scheme"]

#: Puts the scheme in the OpenAPI document (it never refuses); the checking is :class:`Auth`'s.
bearer_scheme = HTTPBearer(auto_error=False, description="a token of WABOT_API_TOKENS")


class RequestLimit:
    """At most ``per_minute`` requests per token name and minute (``clock``: seconds)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    def check(self, name: str) -> None:
        """Count one request of token ``name``; raise a 429 :class:`ApiError` over the limit."""
        if self.per_minute <= 0:
            return
        now = self.clock()
        window = int(now // 60)
        current, count = self._windows.get(name, (window, 0))
        if current != window:
            count = 0
        if count >= self.per_minute:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.per_minute} requests this minute with this token",
                headers={"Retry-After": str(retry)},
            )
        self._windows[name] = (window, count + 1)


class Auth:
    """The FastAPI dependency every route but health, readiness (and a public /metrics)
    carries; returns the token's name and stores it in ``request.state.token``."""

    def __init__(self, tokens: Mapping[str, str], limit: RequestLimit) -> None:
        self.tokens = dict(tokens)
        self.limit = limit

    def __call__(self, request: Request) -> str:
        header = request.headers.get("Authorization")
        if not header:
            raise ApiError(
                401,
                "unauthorized",
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        name = token_name(header, self.tokens)
        if name is None:
            raise ApiError(403, "forbidden", "the token is not valid")
        self.limit.check(name)
        request.state.token = name
        return name
