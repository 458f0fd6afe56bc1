"""The operator API's auth, error shapes and body limit, called through ASGI (no server,
broker or store: every request here is answered before a route touches either).

The route test walks ``app.routes``: a route added without the token dependency fails it.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from pipeline.api.app import create_api
from pipeline.api.auth import RequestLimit
from pipeline.api.dashboard import DASHBOARD_PATHS
from pipeline.api.errors import ApiError
from pipeline.api.routes.health import OPEN_PATHS
from pipeline.config.settings import Settings

pytestmark = pytest.mark.unit

TOKEN = "s3cret-token-for-tests"


def api(tmp_path: Path, **settings: Any) -> FastAPI:
    config = Settings(
        data_dir=tmp_path,
        api_tokens={"ops": TOKEN, "other": "another-token"},  # type: ignore[arg-type]
        **settings,
    )
    return create_api(config, background=False)


def call(
    app: FastAPI,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the app's ASGI interface: status, headers, body."""
    sent: list[dict[str, Any]] = []
    given = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        given["authorization"] = f"Bearer {token}"
    parts = chunks if chunks is not None else [body or b""]
    if chunks is None and body is not None:
        given["content-length"] = str(len(body))
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in given.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8014),
    }

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def served() -> None:
        # Inside the app's lifespan, as a server runs it: its store engine is disposed after.
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)  # type: ignore[arg-type]

    asyncio.run(served())
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "4915112345678@c.us", path)


def test_every_route_but_health_needs_a_token(tmp_path: Path) -> None:
    app = api(tmp_path, metrics_public=False)
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 16
    checked = dashboard = 0
    for route in routes:
        for method in route.methods:
            path = concrete(route.path)
            status, _, body = call(app, method, path)
            if route.path in OPEN_PATHS:
                assert status != 401 and status != 403, (method, route.path, status)
                continue
            if route.path in DASHBOARD_PATHS:
                # Deliberately open: the dashboard's page, script, style and uPlot's files are
                # the same for everyone and hold no data (like /api/openapi.json); the page
                # asks for a token and sends it with every /api call (the routes checked below).
                # (test_api_dashboard.py: what they serve, and 503 without the uPlot bundle.)
                assert status in (200, 503), (method, route.path, status)
                dashboard += 1
                continue
            assert status == 401, (method, route.path, status, body)
            assert json.loads(body)["code"] == "unauthorized"
            status, _, body = call(app, method, path, token="wrong")
            assert status == 403, (method, route.path, status)
            assert json.loads(body) == {"code": "forbidden", "message": "the token is not valid"}
            checked += 1
    assert checked == 14  # 13 routes under /api and /metrics (closed by the setting)
    assert dashboard == len(DASHBOARD_PATHS) == 6  # the page, 3 of its files, 2 of uPlot


def test_metrics_open_by_setting(tmp_path: Path) -> None:
    status, _, body = call(api(tmp_path), "GET", "/metrics")
    assert status == 200 and b"wabot_api_requests" in body
    assert call(api(tmp_path, metrics_public=False), "GET", "/metrics")[0] == 401
    assert call(api(tmp_path, metrics_public=False), "GET", "/metrics", token=TOKEN)[0] == 200


def test_health_and_openapi(tmp_path: Path) -> None:
    app = api(tmp_path)
    assert call(app, "GET", "/healthz") == (
        200,
        call(app, "GET", "/healthz")[1],
        b'{"status":"ok"}',
    )
    status, _, body = call(app, "GET", "/api/openapi.json")
    document = json.loads(body)
    assert status == 200
    assert "/api/messages" in document["paths"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (
            {"chat_id": "4915112345678@c.us", "text": "hi", "colour": "red"},
            "colour",
            "unknown field",
        ),
        ({"chat_id": "4915112345678@c.us", "text": ""}, "text", "at least 1 character"),
        ({"chat_id": "4915112345678@c.us", "text": "x" * 4097}, "text", "at most 4096"),
        ({"chat_id": "4915112345678@c.us", "text": "   "}, "text", "blank"),
        ({"chat_id": "4915112345678@c.us", "text": "a\x00b"}, "text", "NUL"),
        ({"chat_id": "not a chat", "text": "hi"}, "chat_id", "invalid WhatsApp chat id"),
        ({"chat_id": "4915112345678@c.us", "text": "hi", "priority": 9}, "priority", "less than"),
        ({"chat_id": "4915112345678@c.us", "text": 5}, "text", "valid string"),
        (
            {"chat_id": "4915112345678@c.us", "text": "hi", "send_at": "2026-12-01T10:00:00"},
            "send_at",
            "timezone",
        ),
        ({"text": "hi"}, "chat_id", "Field required"),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    tmp_path: Path, body: dict[str, Any], field: str, reason: str
) -> None:
    status, _, out = call(
        api(tmp_path), "POST", "/api/messages", token=TOKEN, body=json.dumps(body).encode()
    )
    error = json.loads(out)
    assert status == 422, error
    assert error["code"] == "invalid" and error["field"] == field
    assert reason.lower() in error["message"].lower(), error


def test_malformed_json_is_400_with_the_error_shape(tmp_path: Path) -> None:
    status, _, out = call(api(tmp_path), "POST", "/api/messages", token=TOKEN, body=b'{"chat_id": ')
    assert status == 400
    assert json.loads(out)["code"] == "malformed_json"


def test_query_and_path_errors_name_the_field(tmp_path: Path) -> None:
    app = api(tmp_path)
    status, _, out = call(app, "GET", "/api/chats?limit=0", token=TOKEN)
    assert status == 422 and json.loads(out)["field"] == "query.limit"
    status, _, out = call(app, "GET", "/api/chats/nonsense/messages", token=TOKEN)
    assert status == 422 and json.loads(out)["field"] == "chat_id"
    status, _, out = call(app, "GET", "/api/chats?cursor=zzz", token=TOKEN)
    assert status == 422 and json.loads(out)["field"] == "query.cursor"
    status, _, out = call(app, "GET", "/api/nothing-here", token=TOKEN)
    assert status == 404 and json.loads(out)["code"] == "not_found"


def test_bodies_over_64_kib_are_413(tmp_path: Path) -> None:
    app = api(tmp_path)
    big = json.dumps({"chat_id": "4915112345678@c.us", "text": "x" * 70_000}).encode()
    status, _, out = call(app, "POST", "/api/messages", token=TOKEN, body=big)
    assert status == 413 and json.loads(out)["code"] == "body_too_large"
    # Streamed without a length: counted as it arrives.
    chunks = [big[i : i + 8192] for i in range(0, len(big), 8192)]
    status, _, out = call(app, "POST", "/api/messages", token=TOKEN, chunks=chunks)
    assert status == 413 and json.loads(out)["code"] == "body_too_large"
    # Just under the limit is read (and then judged on its content).
    fits = json.dumps({"chat_id": "4915112345678@c.us", "text": "x" * 60_000}).encode()
    status, _, out = call(app, "POST", "/api/messages", token=TOKEN, body=fits)
    assert status == 422 and json.loads(out)["field"] == "text"


def test_per_token_request_limit(tmp_path: Path) -> None:
    app = api(tmp_path, api_requests_per_minute=3)
    for _ in range(3):
        assert call(app, "GET", "/api/chats?limit=0", token=TOKEN)[0] == 422
    status, headers, out = call(app, "GET", "/api/chats?limit=0", token=TOKEN)
    assert status == 429 and json.loads(out)["code"] == "rate_limited"
    assert 1 <= int(headers["retry-after"]) <= 60
    # Another token has its own budget.
    assert call(app, "GET", "/api/chats?limit=0", token="another-token")[0] == 422


def test_request_limit_windows() -> None:
    now = [120.5]
    limit = RequestLimit(2, clock=lambda: now[0])
    limit.check("a")
    limit.check("a")
    with pytest.raises(ApiError) as refused:
        limit.check("a")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "60"}
    now[0] = 180.0  # the next minute
    limit.check("a")
    RequestLimit(0).check("a")  # 0: off


def test_no_token_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    app = api(tmp_path)
    call(app, "GET", "/api/chats?q=secret+words&limit=0", token=TOKEN)
    call(app, "GET", "/api/chats", token="wrong-secret")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in logged and "wrong-secret" not in logged and "secret words" not in logged
