"""The operator API against hostile requests: every one is answered 4xx with the field at
fault, never 500, and never taken in a sense the client did not mean.

Requests go through the app's ASGI interface on one event loop with a real SQLite store
(migrated in tmp_path) and no broker; the slow clients talk to uvicorn on 127.0.0.1 over real
sockets, served the way ``faust -A pipeline api`` serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from pipeline.api.app import create_api
from pipeline.api.queries import Cursor
from pipeline.api.serving import server_config
from pipeline.broker import free_port
from pipeline.config.settings import Settings
from pipeline.store import schema
from pipeline.store.models import ChatRow

pytestmark = pytest.mark.unit

TOKEN = "hostile-input-token"
CHAT = "4915112345678@c.us"
ACCOUNT = "4915100000000@c.us"
LATEST = "9999-12-31T23:59:59-14:00"  # after 9999-12-31 in UTC
EARLIEST = "0001-01-01T00:00:00+14:00"  # before year 1 in UTC


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings(data_dir=tmp_path, api_tokens={"ops": TOKEN}, **more)  # type: ignore[arg-type]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The API on a migrated SQLite store in tmp_path (no broker, no background tasks)."""
    api = create_api(settings(tmp_path), background=False)
    engine = api.state.context.store.engine
    await schema.upgrade(engine)
    try:
        yield api
    finally:
        await engine.dispose()


async def call(
    app: FastAPI,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request through ASGI with the token: the status and the decoded JSON body.
    ``raw`` is sent as it is (for bodies ``json.dumps`` cannot make)."""
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    given = {
        "content-type": "application/json",
        "authorization": f"Bearer {TOKEN}",
        "content-length": str(len(data)),
        **(headers or {}),
    }
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
    messages = [{"type": "http.request", "body": data, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # Starlette re-raises after answering 500; the answer is what counts.
    with contextlib.suppress(Exception):
        await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(out) if out else {}


def later(seconds: float = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def message(**fields: Any) -> dict[str, Any]:
    """A body of POST /api/messages that is held (no broker needed) for a chat the store
    does not know, so it names the account."""
    return {"chat_id": CHAT, "text": "hello", "account_id": ACCOUNT, "send_at": later(), **fields}


def assert_refused(answer: tuple[int, dict[str, Any]], status: int, code: str, field: str) -> None:
    got, body = answer
    assert (got, body.get("code"), body.get("field")) == (status, code, field), body
    assert body["message"]


# -- dates beyond what a UTC time can hold -------------------------------------------------
@pytest.mark.parametrize("when", [LATEST, EARLIEST])
async def test_dates_out_of_range_are_422_naming_the_field(app: FastAPI, when: str) -> None:
    assert_refused(
        await call(app, "POST", "/api/messages", message(send_at=when)), 422, "invalid", "send_at"
    )
    quoted = when.replace("+", "%2B")
    assert_refused(
        await call(app, "GET", f"/api/chats/{CHAT}/messages?before={quoted}"),
        422,
        "invalid",
        "query.before",
    )
    moment = datetime.fromisoformat(when)
    cursor = Cursor(moment, "out|x").encode()
    assert_refused(
        await call(app, "GET", f"/api/chats?cursor={cursor}"), 422, "invalid", "query.cursor"
    )
    assert_refused(
        await call(app, "GET", f"/api/chats/{CHAT}/messages?before={cursor}"),
        422,
        "invalid",
        "query.before",
    )


async def test_an_unexpected_error_is_logged_with_its_traceback(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("the disk is full of kaboom")

    app.add_api_route("/api/broken", broken, methods=["GET"])
    caplog.set_level(logging.ERROR, logger="pipeline.api")
    status, body = await call(app, "GET", "/api/broken")
    assert status == 500 and body["code"] == "internal" and "kaboom" not in json.dumps(body)
    [record] = [r for r in caplog.records if r.name == "pipeline.api.errors"]
    assert "GET /api/broken" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "the disk is full of kaboom" in caplog.text and "Traceback" in caplog.text


# -- duplicate keys ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "raw", "key"),
    [
        (
            "POST",
            "/api/messages",
            b'{"chat_id": "491600000001@c.us", "text": "hi", "chat_id": "491600000002@c.us"}',
            "chat_id",
        ),
        ("POST", f"/api/chats/{CHAT}/pause", b'{"minutes": 5, "minutes": 525600}', "minutes"),
        ("PUT", f"/api/chats/{CHAT}/profile", b'{"enabled": true, "enabled": false}', "enabled"),
        (
            "PUT",
            f"/api/accounts/{ACCOUNT}/profile",
            b'{"model": {"name": "a", "name": "b"}}',
            "name",
        ),
    ],
)
async def test_duplicate_json_keys_are_400_naming_the_key(
    app: FastAPI, method: str, path: str, raw: bytes, key: str
) -> None:
    assert_refused(await call(app, method, path, raw=raw), 400, "duplicate_key", key)


# -- strict types ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/messages", message(priority=True), "priority"),
        ("POST", "/api/messages", message(priority="1"), "priority"),
        ("POST", "/api/messages", message(priority=1.0), "priority"),
        ("POST", "/api/messages", message(override_limits="true"), "override_limits"),
        ("POST", "/api/messages", message(override_limits=1), "override_limits"),
        ("POST", "/api/messages", message(send_at=1893456000), "send_at"),
        ("POST", f"/api/chats/{CHAT}/pause", {"minutes": "30"}, "minutes"),
        ("POST", f"/api/chats/{CHAT}/pause", {"minutes": True}, "minutes"),
        ("PUT", f"/api/chats/{CHAT}/profile", {"enabled": "no"}, "enabled"),
        ("PUT", f"/api/chats/{CHAT}/profile", {"enabled": 0}, "enabled"),
        ("PUT", f"/api/accounts/{ACCOUNT}/profile", {"enabled": "no"}, "enabled"),
        (
            "PUT",
            f"/api/accounts/{ACCOUNT}/profile",
            {"rate_chat_per_minute": True},
            "rate_chat_per_minute",
        ),
        (
            "PUT",
            f"/api/accounts/{ACCOUNT}/profile",
            {"rate_chat_per_minute": "5"},
            "rate_chat_per_minute",
        ),
    ],
)
async def test_values_of_another_type_are_422_not_converted(
    app: FastAPI, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    assert_refused(await call(app, method, path, body), 422, "invalid", field)


async def test_exact_types_and_iso_times_are_still_taken(app: FastAPI) -> None:
    status, held = await call(
        app, "POST", "/api/messages", message(priority=1, override_limits=True)
    )
    assert status == 202, held
    assert (held["state"], held["priority"]) == ("scheduled", 1)


# -- what cannot be sent -----------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "\u200b",
        "\u200b\u200c\u200d\u2060\ufeff",
        " \u200b\n\t\u2060 ",
        "\u00ad\u2062\u2063",  # a soft hyphen, invisible times and separator
        "\u3000\u200b",  # an ideographic space
    ],
)
async def test_invisible_text_is_blank(app: FastAPI, text: str) -> None:
    status, body = await call(app, "POST", "/api/messages", message(text=text))
    assert_refused((status, body), 422, "invalid", "text")
    assert "blank" in body["message"]


async def test_text_with_joined_emoji_is_not_blank(app: FastAPI) -> None:
    status, body = await call(
        app, "POST", "/api/messages", message(text="\U0001f469\u200d\U0001f4bb")
    )
    assert status == 202, body


@pytest.mark.parametrize("send_at", [None, "later"])
async def test_a_chat_the_sink_never_sends_to_is_422(app: FastAPI, send_at: str | None) -> None:
    body = message(chat_id="status@broadcast")
    body["send_at"] = later() if send_at else None
    status, answer = await call(app, "POST", "/api/messages", body)
    assert_refused((status, answer), 422, "invalid", "chat_id")
    assert "status@broadcast" in answer["message"]


# -- idempotency keys ----------------------------------------------------------------------
async def test_an_idempotency_key_reused_with_another_body_is_422(app: FastAPI) -> None:
    key = {"Idempotency-Key": "order-4711-shipped"}
    first = message(text="Your order shipped.")
    status, accepted = await call(app, "POST", "/api/messages", first, headers=key)
    assert status == 202, accepted
    # The same request again (a retry): the first answer, no second message.
    assert await call(app, "POST", "/api/messages", first, headers=key) == (202, accepted)
    for other in (
        {**first, "text": "Your order was lost."},
        {**first, "chat_id": "491600000009@c.us"},
        {**first, "priority": 1},
    ):
        assert_refused(
            await call(app, "POST", "/api/messages", other, headers=key),
            422,
            "idempotency_key_reused",
            "header.Idempotency-Key",
        )
    # Still the first message, the first answer.
    assert await call(app, "POST", "/api/messages", first, headers=key) == (202, accepted)


# -- unknown accounts ----------------------------------------------------------------------
async def test_put_to_an_unknown_account_is_404_like_get(app: FastAPI) -> None:
    path = "/api/accounts/491699999999@c.us/profile"
    assert_refused(await call(app, "GET", path), 404, "unknown_account", "account_id")
    assert_refused(
        await call(app, "PUT", path, {"system_prompt": "Be brief."}),
        404,
        "unknown_account",
        "account_id",
    )
    # A known account (one of its chats is in the store) passes on to the broker (none
    # here: 503, nothing changed).
    store = app.state.context.store
    async with store.sessions.begin() as session:
        session.add(ChatRow(chat_id=CHAT, account_id=ACCOUNT, is_group=False))
    status, body = await call(app, "PUT", f"/api/accounts/{ACCOUNT}/profile", {"model": "m"})
    assert (status, body["code"]) == (503, "broker_unavailable")


# -- slow and idle clients -----------------------------------------------------------------
class Served:
    """The API (no background tasks) under uvicorn on 127.0.0.1, configured as in production."""

    def __init__(self, config: Settings) -> None:
        self.port = config.api_port
        self.server = uvicorn.Server(server_config(create_api(config, background=False), config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "no API"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = settings(
        tmp_path,
        web_host="127.0.0.1",
        api_port=free_port(),
        api_idle_timeout_s=1.0,
        api_request_timeout_s=1.5,
    )
    with Served(config) as server:
        yield server


async def _closed_after(port: int, opening: bytes, drip: bytes = b"") -> tuple[float, bytes]:
    """Connect, send ``opening``, then ``drip`` a byte every 0.1 s, reading until the server
    closes the connection (at most 10 s). Returns the seconds it took and what was read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    if opening:
        writer.write(opening)
    read = asyncio.create_task(reader.read(65536))
    got = b""
    try:
        for byte in drip:
            done, _ = await asyncio.wait({read}, timeout=0.1)
            if done:
                break
            writer.write(bytes([byte]))
        while time.monotonic() - began < 10:
            chunk = await asyncio.wait_for(read, 10 - (time.monotonic() - began))
            if not chunk:
                break
            got += chunk
            read = asyncio.create_task(reader.read(65536))
    except (ConnectionError, TimeoutError):
        pass
    finally:
        read.cancel()
        writer.close()
    return time.monotonic() - began, got


async def _get(port: int, path: str) -> tuple[float, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return time.monotonic() - began, answer


def test_slow_and_idle_clients_are_closed_and_others_answered(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    port = served.port
    post = b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    silent = b""
    half_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Ag"
    half_body = post + b"Content-Length: 200\r\n\r\n" + b'{"chat_id": "4915'
    drip = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 60
    kept_alive = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    async def run() -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]:
        clients = [
            *(_closed_after(port, silent) for _ in range(10)),
            *(_closed_after(port, half_header) for _ in range(10)),
            *(_closed_after(port, half_body) for _ in range(10)),
            *(_closed_after(port, b"", drip) for _ in range(10)),
            *(_closed_after(port, kept_alive) for _ in range(10)),
        ]
        slow = asyncio.gather(*clients)
        await asyncio.sleep(0.3)  # every slow client is connected by now
        answered = [await _get(port, "/healthz") for _ in range(3)]
        return await slow, answered

    closed, answered = asyncio.run(run())
    for seconds, answer in answered:
        assert seconds < 1.0 and answer.startswith(b"HTTP/1.1 200"), answer
    assert len(closed) == 50
    silent_ones, half_headers, half_bodies, drips, kept = (
        closed[i : i + 10] for i in range(0, 50, 10)
    )
    for seconds, answer in silent_ones:  # the idle timeout: closed, nothing said
        assert 0.8 < seconds < 2.5 and answer == b"", (seconds, answer)
    for seconds, answer in [*half_headers, *half_bodies, *drips]:  # the request timeout
        assert 1.3 < seconds < 3.0, (seconds, answer)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    for seconds, answer in kept:  # answered, then closed when idle for the idle timeout
        assert answer.startswith(b"HTTP/1.1 200") and 0.8 < seconds < 2.5, (seconds, answer)
    # Closing them is routine: no error (nor a traceback) per slow client in the log.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
