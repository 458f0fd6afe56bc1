"""A WhatsApp Web look-alike served on localhost, for development and end-to-end tests.

The gateway drives real WhatsApp Web through WA-JS's ``window.WPP``. This server gives it a page
that looks and answers the same way without a phone, an account or the internet: ``GET /`` is the
bot's "WhatsApp Web" (a chat UI whose script defines ``window.WPP`` with WA-JS 4.6.0 names and
event shapes), ``GET /phone`` is the other side (customers, group members and the account owner
typing), and ``/control/*`` is a JSON API for tests.

The world (chats, messages, acks) lives here, in memory; the page only mirrors it. With
``LookalikeConfig.state_file`` (``make dev`` uses ``<data_dir>/lookalike/world.json``) the world
and the login are also written there after every change and read back at start, so a restart
keeps its chats and its logged-in page, as WhatsApp does; without it every start is a fresh
world (what tests get). What makes the look-alike useful for tests is that it keeps WhatsApp's
awkward properties:

- one active web session per account: a second page, or ``POST /control/conflict``, puts the
  first one into the "open in another window" state until it takes over again;
- messages that arrive while no ready page is connected are stored and show up in the chat list
  and in ``WPP.chat.getMessages``, but never as a live ``chat.new_message``: the gateway must
  catch up by itself after every (re)start;
- acks come later and separately (1 when the page sends, 2 after ``ack_delay_s``, 3 when the
  customer reads), so "sent but not delivered" can be observed and scripted;
- logins survive reloads through a session token in the page's ``localStorage`` (a persistent
  browser profile keeps it), and a logout on the server invalidates it;
- ``keep_message_ids=False`` makes ``sendTextMessage`` ignore the ``messageId`` it is asked for
  and assign its own id, as a WhatsApp Web may: the echo (``chat.new_message``, ``fromMe``)
  then arrives before the call returns, under an id the caller never chose;
- people have ``@lid`` ids besides their phone ids (``WPP.contact.getPnLidEntry``, the
  account's own ``WPP.conn.getMyUserLid``), and a message can arrive a second time under the
  sender's LID;
- people edit, delete for everyone and react (``chat.msg_edited``, ``chat.msg_revoke``,
  ``chat.new_reaction``);
- sends go wrong the ways they do on WhatsApp Web: a number may not be on WhatsApp
  (``POST /control/registered``; ``WPP.contact.queryWidExists`` then answers null), and
  ``POST /control/send_fault`` makes the sends to one chat come back refused (a
  ``messageSendResult`` other than ``OK``, without an exception), never answered, or stored
  and delivered but never answered.

Page <-> server traffic: the page listens on ``GET /events`` (Server-Sent Events) and calls
``/api/*`` with its session token and connection id in headers. Run it in the foreground with
``python -m pipeline.dev.lookalike --port 8090``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from aiohttp import web

from pipeline.dev.lookalike.world import (
    ACK_DEVICE,
    ACK_READ,
    ACK_SERVER,
    Chat,
    Message,
    World,
    WorldError,
    is_group,
)
from pipeline.dev.servers import ThreadedServer, serve_until_stopped

__all__ = [
    "LOGOUT_REASONS",
    "SEND_HANGS",
    "SEND_RESULTS",
    "Lookalike",
    "LookalikeConfig",
    "LookalikeError",
    "ThreadedLookalike",
    "main",
    "run_in_thread",
]

STATIC_DIR = Path(__file__).with_name("static")

LOGOUT_REASONS: frozenset[str] = frozenset(
    {
        "user_initiated",
        "syncd_failure",
        "invalid_adv_status",
        "critical_sync_timeout",
        "syncd_timeout",
        "history_sync_timeout",
        "account_sync_timeout",
        "md_opt_out",
        "unknown_companion",
        "client_version_outdated",
        "account_locked",
        "storage_quota_exceeded",
    }
)
"""A subset of WhatsApp Web's ``LogoutReason`` values, what ``conn.logout_reason`` carries."""

SESSION_HEADER = "X-Lookalike-Session"
CONN_HEADER = "X-Lookalike-Conn"
HEARTBEAT_S = 15.0

SEND_RESULTS: frozenset[str] = frozenset(
    {"ERROR_NETWORK", "ERROR_EXPIRED", "ERROR_CANCELLED", "ERROR_UPLOAD", "ERROR_UNKNOWN"}
)
"""WhatsApp's refusals of a send: the ``SendMsgResult`` values other than ``OK`` (WA-JS
src/whatsapp/enums/SendMsgResult.ts), what ``sendMsgResult.messageSendResult`` carries."""

SEND_HANGS: frozenset[str] = frozenset({"hang", "lost_answer"})
"""Faults of ``POST /control/send_fault`` besides refusals: ``hang`` (the server never
answers and stores nothing, so ``sendTextMessage`` with ``waitForAck`` never resolves) and
``lost_answer`` (the message is stored and delivered, but the answer never comes)."""

log = logging.getLogger(__name__)

#: The version of the state file's layout (``LookalikeConfig.state_file``).
STATE_VERSION = 1

PageMode = Literal["qr", "main", "conflict", "logged_out", "closed"]
LoginState = Literal["logged_out", "qr", "authenticated", "main_ready", "conflict"]
_T = TypeVar("_T")


class LookalikeError(Exception):
    """A request that is well formed but not possible now (HTTP 409) or not allowed (401/404)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class LookalikeConfig:
    me: str = "10000@c.us"
    """The bot's account, what ``WPP.conn.getMyUserId()`` returns once logged in."""
    me_name: str = "Lookalike Bot"
    me_lid: str | None = "190000000000001@lid"
    """The account's LID (``WPP.conn.getMyUserLid()``); group members may mention it."""
    keep_message_ids: bool = True
    """False: ``sendTextMessage`` ignores its ``messageId`` option and assigns its own id."""
    ack_delay_s: float | None = 0.3
    """Seconds from ack 1 (sent) to ack 2 (delivered); ``None``: never delivered."""
    qr_refresh_s: float = 20.0
    """How often the QR code changes while shown, like WhatsApp's; 0 keeps it."""
    logout_reload_s: float = 1.0
    """After a logout the page reloads itself (as WhatsApp Web does) after this many seconds."""
    seed: bool = True
    """Start with two customers (Alice, Bob) and a group with both."""
    state_file: Path | None = None
    """Where the world (contacts, chats, messages) and the login are kept across restarts:
    JSON ``{version, me, session, world}``, written after every change, read at start (a
    file of another account or layout is not read: the world starts afresh and replaces
    it). None: in memory only, every start a fresh world."""


@dataclass
class _SendFault:
    """What the next sends to one chat meet: a ``SEND_RESULTS`` refusal or a ``SEND_HANGS``."""

    fault: str
    times: int | None
    """How many more sends it affects; ``None``: every one until it is cleared."""

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault, "times": self.times}


@dataclass(eq=False)
class _PageConn:
    """One open bot page, as seen through its event stream."""

    id: str
    opened: float
    mode: PageMode = "qr"
    token: str | None = None
    ready: bool = False
    """It reported ``conn.main_ready``: new messages reach it as live events."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)

    def push(self, event: str, data: dict[str, Any]) -> None:
        if self.mode != "closed":
            self.queue.put_nowait((event, data))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "mode": self.mode, "ready": self.ready}


def _new_auth_code() -> dict[str, Any]:
    """An AuthCode shaped like WA-JS's ``AuthCodeMultiDevice`` (``conn.auth_code_change``)."""

    def b64(size: int) -> str:
        return base64.b64encode(secrets.token_bytes(size)).decode("ascii")

    ref = "2@" + b64(66)
    static_key, identity_key, secret_key = b64(32), b64(32), b64(32)
    return {
        "type": "multidevice",
        "ref": ref,
        "staticKeyPair": static_key,
        "identityKeyPair": identity_key,
        "secretKey": secret_key,
        "fullCode": ",".join([ref, static_key, identity_key, secret_key]),
    }


def _qr_svg(data: str) -> str:
    try:
        import qrcode
        import qrcode.image.svg
    except ImportError:  # the picture is a nicety: #qr-code has the text
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">'
            '<rect width="100" height="100" fill="#eee"/>'
            '<text x="50" y="55" font-size="10" text-anchor="middle">QR</text></svg>'
        )
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return str(image.to_string(encoding="unicode"))


def _new_inner_id() -> str:
    """The id of a protocol message or reaction, shaped like a phone's (``3A`` + hex)."""
    return "3A" + secrets.token_hex(9).upper()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _refused(result: str, message: str) -> web.Response:
    """A send WhatsApp did not take: the page resolves ``sendTextMessage`` with ``result``."""
    return web.json_response(
        {"error": "send_refused", "message": message, "send_result": result}, status=503
    )


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except WorldError as exc:
        return _error(400, "bad_request", str(exc))
    except LookalikeError as exc:
        return _error(exc.status, exc.code, str(exc))
    # Persistent browser profiles must never run yesterday's page script.
    if not response.prepared:
        response.headers["Cache-Control"] = "no-store"
    return response


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise WorldError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WorldError("the body must be a JSON object")
    return body


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WorldError(f"{name} must be a string")
    return value


def _req_str(body: dict[str, Any], name: str) -> str:
    value = _opt_str(body, name)
    if value is None:
        raise WorldError(f"{name} is required")
    return value


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WorldError(f"{name} must be a list of strings")
    return list(value)


def _opt_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise WorldError(f"{name} must be a number >= 0")
    return float(value)


class Lookalike:
    """The look-alike server, run on the caller's event loop.

    The public methods (``customer_message``, ``owner_message``, ``scan``...) are what the
    ``/control`` routes call; in-process tests may call them directly on the server's loop.
    """

    def __init__(self, config: LookalikeConfig | None = None) -> None:
        self.config = config if config is not None else LookalikeConfig()
        self.world = World(
            self.config.me,
            self.config.me_name,
            me_lid=self.config.me_lid,
            seed=self.config.seed,
        )
        self._ack_delay_s = self.config.ack_delay_s
        self._keep_message_ids = self.config.keep_message_ids
        self._session: str | None = None
        self._auth: dict[str, Any] | None = None
        self._conns: dict[str, _PageConn] = {}
        self._active: _PageConn | None = None
        self._phones: set[asyncio.Queue[str | None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._send_faults: dict[str, _SendFault] = {}
        self._hung: asyncio.Event | None = None
        self._qr_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._load()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Starts listening and returns the base URL (``http://127.0.0.1:PORT``)."""
        if self._runner is not None:
            raise RuntimeError("the look-alike is already started")
        runner = web.AppRunner(
            self._app(), access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        family, type_, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
            0
        ]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        self._base_url = f"http://{shown}:{int(bound_port)}"
        self._qr_task = asyncio.get_running_loop().create_task(self._rotate_qr())
        return self._base_url

    async def stop(self) -> None:
        """Ends every event stream, cancels pending acks and closes the listener."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._qr_task is not None:
            self._qr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._qr_task
            self._qr_task = None
        self._cancel_timers()
        self._release_hung_sends()
        for conn in list(self._conns.values()):
            conn.queue.put_nowait(None)
        for queue in list(self._phones):
            queue.put_nowait(None)
        await runner.cleanup()
        self._save()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the look-alike is not started")
        return self._base_url

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_middleware])
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/phone", self._phone)
        r.add_get("/qr.svg", self._qr)
        r.add_get("/events", self._page_events)
        r.add_post("/api/ready", self._api_ready)
        r.add_post("/api/takeover", self._api_takeover)
        r.add_post("/api/send", self._api_send)
        r.add_get("/api/exists", self._api_exists)
        r.add_post("/api/read", self._api_read)
        r.add_post("/api/presence", self._api_presence)
        r.add_post("/api/logout", self._api_logout)
        r.add_post("/api/bye", self._api_bye)
        r.add_get("/api/chats", self._api_chats)
        r.add_get("/api/messages", self._api_messages)
        r.add_get("/api/message", self._api_message)
        r.add_get("/api/lid", self._api_lid)
        r.add_get("/api/contacts", self._api_contacts)
        r.add_post("/control/message", self._control_message)
        r.add_post("/control/owner", self._control_owner)
        r.add_post("/control/group", self._control_group)
        r.add_post("/control/contact", self._control_contact)
        r.add_post("/control/scan", self._control_scan)
        r.add_post("/control/logout", self._control_logout)
        r.add_post("/control/conflict", self._control_conflict)
        r.add_post("/control/read", self._control_read)
        r.add_post("/control/reset", self._control_reset)
        r.add_post("/control/config", self._control_config)
        r.add_post("/control/send_fault", self._control_send_fault)
        r.add_post("/control/registered", self._control_registered)
        r.add_post("/control/edit", self._control_edit)
        r.add_post("/control/revoke", self._control_revoke)
        r.add_post("/control/react", self._control_react)
        r.add_get("/control/state", self._control_state)
        r.add_get("/control/events", self._phone_events)
        r.add_static("/static/", STATIC_DIR)
        return app

    # -- the world, as the control API sees it -------------------------------------------------

    def login_state(self) -> LoginState:
        active = self._active
        if self._session is None:
            qr = any(c.mode == "qr" for c in self._conns.values())
            return "qr" if qr else "logged_out"
        if active is not None:
            return "main_ready" if active.ready else "authenticated"
        if any(c.mode == "conflict" for c in self._conns.values()):
            return "conflict"
        return "authenticated"

    def state(self) -> dict[str, Any]:
        """What ``GET /control/state`` returns."""
        active = self._active
        return {
            "login": self.login_state(),
            "session": self._session is not None,
            "auth_code": self._auth,
            "page": {
                "open": active is not None,
                "ready": bool(active and active.ready),
                "connections": [c.to_json() for c in self._conns.values()],
            },
            "ack_delay_s": self._ack_delay_s,
            "keep_message_ids": self._keep_message_ids,
            "send_faults": {chat: f.to_json() for chat, f in self._send_faults.items()},
            **self.world.snapshot(),
        }

    def customer_message(
        self,
        chat: str,
        body: str,
        *,
        author: str | None = None,
        mentions: Sequence[str] = (),
        type: str = "chat",
        quoted: str | None = None,
        message_id: str | None = None,
        name: str | None = None,
        mimetype: str | None = None,
        filename: str | None = None,
        size: int | None = None,
        ciphertext_s: float | None = None,
        twice_as_lid: bool = False,
    ) -> Message:
        """A customer (or group member ``author``) writes; ``ciphertext_s`` first delivers an
        undecrypted placeholder with the same id, decrypted that many seconds later;
        ``twice_as_lid`` delivers the message a second time with the writer's ``@lid`` in place
        of their phone id (the chat's, in a 1:1 chat), as some WhatsApp builds do."""
        message = self.world.add_message(
            chat,
            "customer",
            "" if ciphertext_s is not None else body,
            author=author,
            type="ciphertext" if ciphertext_s is not None else type,
            mentions=mentions,
            quoted=quoted,
            message_id=message_id,
            name=name,
            mimetype=mimetype,
            filename=filename,
            size=size,
        )
        self._publish_message(message)
        if twice_as_lid:
            self._publish_as_lid(message)
        if ciphertext_s is not None:
            self._later(
                ciphertext_s,
                lambda: self._decrypt(message, type, body, mimetype, filename, size),
            )
        return message

    def owner_message(
        self, chat: str, body: str, *, type: str = "chat", quoted: str | None = None
    ) -> Message:
        """The account owner typed on the phone: ``fromMe``, but not sent by the bot's page."""
        message = self.world.add_message(chat, "owner", body, type=type, quoted=quoted)
        self._publish_message(message)
        self._schedule_delivery(message)
        return message

    def edit(self, key: str, body: str) -> Message:
        """The writer edits a text message: ``chat.msg_edited`` on a ready page."""
        message = self.world.edit_message(key, body)
        self._publish_change("edit", message)
        return message

    def revoke(self, key: str) -> Message:
        """The writer deletes a message for everyone: ``chat.msg_revoke`` on a ready page."""
        message = self.world.revoke_message(key)
        self._publish_change("revoke", message, revoke_id=_new_inner_id())
        return message

    def react(self, key: str, reaction: str, sender: str | None = None) -> Message:
        """``sender`` (default: the 1:1 chat's person, a group's first member) reacts;
        ``''`` takes the reaction back: ``chat.new_reaction`` on a ready page."""
        target = self.world.find_message(key)
        if target is None:
            raise WorldError(f"no such message: {key!r}")
        chat = self.world.chat(target.chat)
        if sender is None:
            sender = (
                (chat.participants[0] if chat.participants else None) if chat.is_group else chat.id
            )
            if sender is None:
                raise WorldError(f"group {chat.id} has no members; name the sender")
        message = self.world.react(key, reaction, sender)
        self._publish_change(
            "reaction",
            message,
            reaction={
                "id": _new_inner_id(),
                "sender": sender,
                "text": reaction,
                "t_ms": int(time.time() * 1000),
            },
        )
        return message

    def set_keep_message_ids(self, keep: bool) -> None:
        """Whether ``sendTextMessage`` keeps the ``messageId`` it is asked for."""
        self._keep_message_ids = keep
        for conn in self._conns.values():
            conn.push("config", {"keep_message_ids": keep})

    def scan(self) -> None:
        """The phone scans the QR code shown by the most recently opened page."""
        showing = [c for c in self._conns.values() if c.mode == "qr"]
        if not showing:
            raise LookalikeError(
                409, "no_qr", "no bot page shows a QR code: open the bot page first"
            )
        conn = max(showing, key=lambda c: c.opened)
        if self._session is None:
            self._session = secrets.token_urlsafe(24)
        self._activate(conn, self._session)
        self._auth = None
        if any(c.mode == "qr" for c in self._conns.values()):
            self._new_qr()
        conn.push(
            "authenticated",
            {
                "token": self._session,
                "me": self.world.me,
                "me_lid": self.world.me_lid,
                "me_name": self.world.me_name,
            },
        )
        self._phones_changed()

    def logout(self, reason: str = "user_initiated") -> bool:
        """Unlinks the web session (from the phone, or the page's ``WPP.conn.logout()``)."""
        if reason not in LOGOUT_REASONS:
            raise WorldError(f"reason must be one of {sorted(LOGOUT_REASONS)}")
        was_logged_in = self._session is not None
        self._session = None
        self._active = None
        for conn in self._conns.values():
            if conn.mode in ("main", "conflict"):
                conn.push("logout", {"reason": reason})
                conn.mode, conn.ready, conn.token = "logged_out", False, None
        self._phones_changed()
        return was_logged_in

    def conflict(self) -> None:
        """WhatsApp Web was opened somewhere else: the bot's page loses the session."""
        active = self._active
        if active is None:
            raise LookalikeError(409, "no_page", "no logged-in bot page is open")
        self._to_conflict(active)
        self._active = None
        self._phones_changed()

    def read(self, chat: str, reader: str | None = None) -> list[Message]:
        """The customer (or group member ``reader``) read the account's messages: blue ticks."""
        target = self.world.chat(chat)
        if target.is_group and reader is None and target.participants:
            reader = target.participants[0]
        changed = self.world.raise_acks(chat, ACK_READ)
        self._publish_acks(target, ACK_READ, changed, reader)
        return changed

    def reset(self, *, logout: bool = False) -> None:
        """Back to the seeded world; the login survives unless ``logout``."""
        self._cancel_timers()
        self._send_faults.clear()
        self._release_hung_sends()
        if logout:
            self.logout()
        self.world.reset()
        for conn in self._conns.values():
            conn.push("reset", {})
        self._phones_changed()

    def set_ack_delay(self, seconds: float | None) -> None:
        self._ack_delay_s = seconds

    def set_send_fault(self, chat: str, fault: str | None, times: int | None = None) -> None:
        """What the next ``times`` sends to ``chat`` meet (``None``: all of them until
        cleared): a refusal (one of :data:`SEND_RESULTS`, which ``sendTextMessage`` resolves
        with as its ``messageSendResult``) or one of :data:`SEND_HANGS`; ``fault`` None
        clears it (and answers the sends hanging so far as refused, ``ERROR_NETWORK``).
        Raises :class:`WorldError` for an unknown fault or a ``times`` below 1."""
        if fault is None:
            self._send_faults.pop(chat, None)
            self._release_hung_sends()
            return
        if fault not in SEND_RESULTS | SEND_HANGS:
            raise WorldError(f"fault must be one of {sorted(SEND_RESULTS | SEND_HANGS)} or null")
        if times is not None and times < 1:
            raise WorldError("times must be 1 or more (null: until cleared)")
        self._send_faults[chat] = _SendFault(fault, times)

    def set_registered(self, user: str, registered: bool) -> None:
        """Whether the number ``user`` is on WhatsApp (``WPP.contact.queryWidExists``)."""
        self.world.set_registered(user, registered)

    # -- internals ------------------------------------------------------------------------------

    def _activate(self, conn: _PageConn, token: str) -> None:
        previous = self._active
        if previous is not None and previous is not conn:
            self._to_conflict(previous)
        conn.mode, conn.token, conn.ready = "main", token, False
        self._active = conn

    def _to_conflict(self, conn: _PageConn) -> None:
        conn.mode, conn.ready = "conflict", False
        conn.push("conflict", {})

    def _detach(self, conn: _PageConn) -> None:
        if conn.mode == "closed":
            return
        conn.mode, conn.ready = "closed", False
        conn.queue.put_nowait(None)
        self._conns.pop(conn.id, None)
        if self._active is conn:
            self._active = None
            for chat in self.world.chats.values():  # a closed page types no more
                chat.typing = False
        if self._auth is not None and not any(c.mode == "qr" for c in self._conns.values()):
            self._auth = None
        self._phones_changed()

    def _new_qr(self) -> None:
        self._auth = _new_auth_code()
        for conn in self._conns.values():
            if conn.mode == "qr":
                conn.push("auth_code", {"auth_code": self._auth})

    async def _rotate_qr(self) -> None:
        while True:
            interval = self.config.qr_refresh_s
            await asyncio.sleep(interval if interval > 0 else 3600)
            if interval > 0 and self._auth is not None:
                self._new_qr()
                self._phones_changed()

    def _chat_json(self, chat: Chat) -> dict[str, Any]:
        return chat.to_json(self.world)

    def _publish_message(self, message: Message, exclude: _PageConn | None = None) -> None:
        active = self._active
        live = active is not None and active.ready
        if message.origin != "bot":
            message.live = live
        if active is not None and active is not exclude:
            active.push(
                "msg",
                {
                    "message": message.to_json(self.world),
                    "chat": self._chat_json(self.world.chat(message.chat)),
                    "live": live,
                },
            )
        self._phones_changed()

    def _publish_as_lid(self, message: Message) -> None:
        """The message once more, its writer named by their LID (a 1:1 chat's id too)."""
        world = self.world
        lid = world.lid_of(message.sender)
        if lid is None:
            raise WorldError(f"{message.sender} has no LID: add the contact with one")
        data = message.to_json(world)
        data["sender"] = lid
        if message.participant:
            data["author"] = lid
            data["serialized"] = f"false_{message.chat}_{message.id}_{lid}"
            chat_json = self._chat_json(world.chat(message.chat))
        else:
            data["chat"] = lid
            data["serialized"] = f"false_{lid}_{message.id}"
            chat_json = {
                **self._chat_json(world.chat(message.chat)),
                "id": lid,
                "last_message": data,
            }
        active = self._active
        if active is not None:
            live = active.ready
            active.push("msg", {"message": data, "chat": chat_json, "live": live})

    def _publish_change(self, kind: str, message: Message, **extra: Any) -> None:
        """An edit, revoke or reaction: the page updates its model and, when live, emits the
        WA-JS event."""
        active = self._active
        if active is not None:
            active.push(
                kind,
                {"message": message.to_json(self.world), "live": active.ready, **extra},
            )
        self._phones_changed()

    def _publish_acks(
        self, chat: Chat, ack: int, messages: list[Message], sender: str | None
    ) -> None:
        if not messages:
            return
        active = self._active
        if active is not None:
            # WA-JS builds these keys from the receipt: in a group the participant is the member
            # who acked, not the author, so ``_serialized`` differs from the message's own key.
            active.push(
                "ack",
                {
                    "chat": chat.id,
                    "ack": ack,
                    "sender": sender if chat.is_group else None,
                    "ids": [
                        {
                            "id": m.id,
                            "from_me": True,
                            "participant": sender if chat.is_group else None,
                        }
                        for m in messages
                    ],
                    "live": active.ready,
                },
            )
        self._phones_changed()

    def _schedule_delivery(self, message: Message) -> None:
        delay = self._ack_delay_s
        if delay is not None:
            self._later(delay, lambda: self._deliver(message))

    def _deliver(self, message: Message) -> None:
        chat = self.world.chats.get(message.chat)
        if chat is None or self.world.messages.get(message.id) is not message:
            return
        changed = self.world.raise_acks(chat.id, ACK_DEVICE, [message.id])
        sender = chat.participants[0] if chat.is_group and chat.participants else None
        self._publish_acks(chat, ACK_DEVICE, changed, sender)

    def _decrypt(
        self,
        message: Message,
        type: str,
        body: str,
        mimetype: str | None,
        filename: str | None,
        size: int | None,
    ) -> None:
        if self.world.messages.get(message.id) is not message:
            return
        self.world.set_content(message, type, body, mimetype=mimetype, filename=filename, size=size)
        if self._active is not None:
            self._active.push(
                "msg_update", {"message": message.to_json(self.world), "live": message.live}
            )
        self._phones_changed()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback()

        handle = loop.call_later(delay, run)
        self._timers.add(handle)

    def _take_send_fault(self, chat: str) -> str | None:
        """The fault the send now being made to ``chat`` meets, counting it down."""
        fault = self._send_faults.get(chat)
        if fault is None:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self._send_faults[chat]
        return fault.fault

    async def _hang(self) -> None:
        """Wait until the hung sends are released (a cleared fault, a reset, the stop)."""
        if self._hung is None:
            self._hung = asyncio.Event()
        await self._hung.wait()

    def _release_hung_sends(self) -> None:
        hung, self._hung = self._hung, None
        if hung is not None:
            hung.set()

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _phones_changed(self) -> None:
        """Something changed: tell the phone pages, and keep it in the state file."""
        for queue in self._phones:
            if queue.empty():
                queue.put_nowait("changed")
        self._save()

    # -- the state file --------------------------------------------------------------------------

    def _load(self) -> None:
        """The world and the login of ``config.state_file``, when it holds this account's."""
        path = self.config.state_file
        if path is None or not path.is_file():
            return
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("version") != STATE_VERSION or saved.get("me") != self.world.me:
                raise WorldError(f"version {saved.get('version')} of account {saved.get('me')}")
            self.world.restore(saved["world"])
        except (OSError, ValueError, AttributeError, KeyError) as exc:  # WorldError too
            log.warning("look-alike: %s not used, the world starts afresh (%s)", path, exc)
            return
        session = saved.get("session")
        self._session = session if isinstance(session, str) and session else None
        if self._ack_delay_s is not None:
            # The acks that were on their way while the look-alike was down have arrived.
            for message in self.world.messages.values():
                if message.from_me and message.ack == ACK_SERVER:
                    message.ack = ACK_DEVICE

    def _save(self) -> None:
        """Write the state file (a temporary file renamed over it: never half written)."""
        path = self.config.state_file
        if path is None:
            return
        data = {
            "version": STATE_VERSION,
            "me": self.world.me,
            "session": self._session,
            "world": self.world.saved(),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            os.replace(partial, path)
        except OSError as exc:
            log.warning("look-alike: cannot keep the world in %s (%s)", path, exc)

    def _page(self, request: web.Request, *, active: bool = True) -> _PageConn:
        """The calling page; it must hold the valid session, and be the active page if asked."""
        token = request.headers.get(SESSION_HEADER)
        if self._session is None or token != self._session:
            raise LookalikeError(401, "logged_out", "this page is not logged in")
        conn = self._conns.get(request.headers.get(CONN_HEADER, ""))
        if conn is None:
            raise LookalikeError(409, "no_connection", "this page has no open event stream")
        if active and self._active is not conn:
            raise LookalikeError(
                409, "conflict", "WhatsApp is open in another window: take over first"
            )
        return conn

    # -- pages and the QR picture ----------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _phone(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "phone.html")

    async def _qr(self, request: web.Request) -> web.Response:
        if self._auth is None:
            raise LookalikeError(404, "no_qr", "no QR code is shown")
        return web.Response(text=_qr_svg(self._auth["fullCode"]), content_type="image/svg+xml")

    # -- the bot page's event stream and API -----------------------------------------------------

    async def _page_events(self, request: web.Request) -> web.StreamResponse:
        conn = _PageConn(id=uuid.uuid4().hex[:16], opened=time.monotonic())
        token = request.query.get("token") or None
        self._conns[conn.id] = conn
        session_invalid = False
        if token is not None and token == self._session:
            self._activate(conn, token)
        else:
            session_invalid = token is not None
            if self._auth is None:
                self._new_qr()
        conn.push(
            "hello",
            {
                "conn": conn.id,
                "mode": conn.mode,
                "me": self.world.me,
                "me_name": self.world.me_name,
                "me_lid": self.world.me_lid,
                "keep_message_ids": self._keep_message_ids,
                "auth_code": self._auth if conn.mode == "qr" else None,
                "session_invalid": session_invalid,
                "logout_reload_ms": int(self.config.logout_reload_s * 1000),
            },
        )
        self._phones_changed()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        try:
            await response.prepare(request)
            while True:
                try:
                    item = await asyncio.wait_for(conn.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                if item is None:
                    break
                event, data = item
                await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._detach(conn)
        return response

    async def _api_ready(self, request: web.Request) -> web.Response:
        conn = self._page(request)
        conn.ready = True
        self._phones_changed()
        return web.json_response({"ok": True})

    async def _api_takeover(self, request: web.Request) -> web.Response:
        conn = self._page(request, active=False)
        assert conn.token is not None
        self._activate(conn, conn.token)
        self._phones_changed()
        return web.json_response({"ok": True})

    async def _api_send(self, request: web.Request) -> web.Response:
        conn = self._page(request)
        body = await _json_body(request)
        chat = _req_str(body, "chat")
        if not is_group(chat) and not self.world.on_whatsapp(chat):
            # What WhatsApp does with a message to a number without an account is not
            # documented by WA-JS (sendTextMessage does not check, WPP.chat.find creates the
            # chat); here it is refused, as an unknown error.
            return _refused("ERROR_UNKNOWN", f"{chat} is not on WhatsApp")
        fault = self._take_send_fault(chat)
        if fault in SEND_RESULTS:
            return _refused(fault, f"the send to {chat} was refused (POST /control/send_fault)")
        if fault == "hang":
            await self._hang()
            return _refused("ERROR_NETWORK", "the hung send was released")
        message = self.world.add_message(
            chat,
            "bot",
            _opt_str(body, "body") or "",
            message_id=_opt_str(body, "id"),
            quoted=_opt_str(body, "quoted"),
            mentions=_str_list(body, "mentions"),
        )
        message.live = conn.ready
        self._publish_message(message, exclude=conn)
        self._schedule_delivery(message)
        if fault == "lost_answer":
            await self._hang()
            return _refused("ERROR_NETWORK", "the hung send was released")
        return web.json_response(
            {
                "message": message.to_json(self.world),
                "chat": self._chat_json(self.world.chat(message.chat)),
            }
        )

    async def _api_exists(self, request: web.Request) -> web.Response:
        """``WPP.contact.queryWidExists``: ``{exists, wid, lid}`` for a user id."""
        self._page(request, active=False)
        user = request.query.get("id", "")
        exists = self.world.on_whatsapp(user)
        return web.json_response(
            {
                "exists": exists,
                "wid": user if exists else None,
                "lid": self.world.lid_of(user) if exists else None,
            }
        )

    async def _api_read(self, request: web.Request) -> web.Response:
        self._page(request)
        chat = _req_str(await _json_body(request), "chat")
        previous = self.world.mark_read_by_page(chat)
        self._phones_changed()
        return web.json_response(
            {"unread_count": previous, "chat": self._chat_json(self.world.chat(chat))}
        )

    async def _api_presence(self, request: web.Request) -> web.Response:
        self._page(request)
        body = await _json_body(request)
        chat = self.world.open_chat(_req_str(body, "chat"))
        chat.typing = _req_str(body, "state") == "composing"
        self._phones_changed()
        return web.json_response({"ok": True})

    async def _api_logout(self, request: web.Request) -> web.Response:
        self._page(request, active=False)
        self.logout("user_initiated")
        return web.json_response({"ok": True})

    async def _api_bye(self, request: web.Request) -> web.Response:
        conn = self._conns.get(request.query.get("conn", ""))
        if conn is not None:
            self._detach(conn)
        return web.json_response({"ok": True})

    async def _api_chats(self, request: web.Request) -> web.Response:
        self._page(request, active=False)
        return web.json_response([self._chat_json(c) for c in self.world.sorted_chats()])

    async def _api_messages(self, request: web.Request) -> web.Response:
        self._page(request, active=False)
        chat = self.world.chats.get(request.query.get("chat", ""))
        if chat is None:
            raise LookalikeError(404, "chat_not_found", "no such chat")
        return web.json_response(
            {
                "chat": self._chat_json(chat),
                "messages": [m.to_json(self.world) for m in self.world.chat_messages(chat.id)],
            }
        )

    async def _api_message(self, request: web.Request) -> web.Response:
        self._page(request, active=False)
        message = self.world.find_message(request.query.get("id", ""))
        if message is None:
            raise LookalikeError(404, "msg_not_found", "no such message")
        return web.json_response(message.to_json(self.world))

    async def _api_lid(self, request: web.Request) -> web.Response:
        self._page(request, active=False)
        user = request.query.get("id", "")
        if not (user.endswith("@c.us") or user.endswith("@lid")):
            raise LookalikeError(400, "invalid_wid", f"getPnLidEntry takes @c.us and @lid: {user}")
        return web.json_response(self.world.pn_lid_entry(user))

    async def _api_contacts(self, request: web.Request) -> web.Response:
        self._page(request, active=False)
        world = self.world
        return web.json_response(
            [
                {"id": user, "name": world.given_name(user), "lid": world.lid_of(user)}
                for user in world.contacts
                if user != world.me
            ]
        )

    # -- the control API -------------------------------------------------------------------------

    async def _control_message(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        size = _opt_number(body, "size")
        message = self.customer_message(
            _req_str(body, "chat"),
            _opt_str(body, "body") or "",
            author=_opt_str(body, "author"),
            mentions=_str_list(body, "mentions"),
            type=_opt_str(body, "type") or "chat",
            quoted=_opt_str(body, "quoted"),
            message_id=_opt_str(body, "id"),
            name=_opt_str(body, "name"),
            mimetype=_opt_str(body, "mimetype"),
            filename=_opt_str(body, "filename"),
            size=int(size) if size is not None else None,
            ciphertext_s=_opt_number(body, "ciphertext_s"),
            twice_as_lid=body.get("twice_as_lid") is True,
        )
        return web.json_response(message.to_json(self.world))

    async def _control_edit(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        message = self.edit(_req_str(body, "id"), _req_str(body, "body"))
        return web.json_response(message.to_json(self.world))

    async def _control_revoke(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        return web.json_response(self.revoke(_req_str(body, "id")).to_json(self.world))

    async def _control_react(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        reaction = body.get("reaction", "")
        if not isinstance(reaction, str):
            raise WorldError("reaction must be a string ('' takes it back)")
        message = self.react(_req_str(body, "id"), reaction, _opt_str(body, "sender"))
        return web.json_response(message.to_json(self.world))

    async def _control_owner(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        message = self.owner_message(
            _req_str(body, "chat"),
            _opt_str(body, "body") or "",
            type=_opt_str(body, "type") or "chat",
            quoted=_opt_str(body, "quoted"),
        )
        return web.json_response(message.to_json(self.world))

    async def _control_group(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        group_id = _opt_str(body, "id") or self.world.new_group_id()
        chat = self.world.add_group(
            group_id, _opt_str(body, "name") or "New group", _str_list(body, "participants")
        )
        for conn in self._conns.values():
            if conn.mode == "main":
                conn.push("chat", {"chat": self._chat_json(chat)})
        self._phones_changed()
        return web.json_response(self._chat_json(chat))

    async def _control_contact(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        user = self.world.add_contact(
            _req_str(body, "id"), _opt_str(body, "name"), lid=_opt_str(body, "lid")
        )
        self._phones_changed()
        return web.json_response({"id": user, "name": self.world.contact_name(user)})

    async def _control_scan(self, request: web.Request) -> web.Response:
        self.scan()
        return web.json_response({"ok": True, "login": self.login_state()})

    async def _control_logout(self, request: web.Request) -> web.Response:
        reason = _opt_str(await _json_body(request), "reason") or "user_initiated"
        was_logged_in = self.logout(reason)
        return web.json_response({"ok": True, "was_logged_in": was_logged_in})

    async def _control_conflict(self, request: web.Request) -> web.Response:
        self.conflict()
        return web.json_response({"ok": True, "login": self.login_state()})

    async def _control_read(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        changed = self.read(_req_str(body, "chat"), _opt_str(body, "reader"))
        return web.json_response({"ok": True, "ids": [m.id for m in changed]})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset(logout=bool((await _json_body(request)).get("logout")))
        return web.json_response({"ok": True})

    async def _control_config(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if "ack_delay_s" in body:
            self.set_ack_delay(_opt_number(body, "ack_delay_s"))
        if "keep_message_ids" in body:
            if not isinstance(body["keep_message_ids"], bool):
                raise WorldError("keep_message_ids must be true or false")
            self.set_keep_message_ids(body["keep_message_ids"])
        return web.json_response(
            {"ack_delay_s": self._ack_delay_s, "keep_message_ids": self._keep_message_ids}
        )

    async def _control_send_fault(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        chat = _req_str(body, "chat")
        times = _opt_number(body, "times")
        if times is not None and times != int(times):
            raise WorldError("times must be a whole number")
        self.set_send_fault(chat, _opt_str(body, "fault"), None if times is None else int(times))
        fault = self._send_faults.get(chat)
        return web.json_response({"chat": chat, **(fault.to_json() if fault else {"fault": None})})

    async def _control_registered(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        user = _req_str(body, "id")
        registered = body.get("registered", False)
        if not isinstance(registered, bool):
            raise WorldError("registered must be true or false")
        self.set_registered(user, registered)
        return web.json_response({"id": user, "registered": self.world.on_whatsapp(user)})

    async def _control_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _phone_events(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        queue.put_nowait("changed")
        self._phones.add(queue)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        try:
            await response.prepare(request)
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                if item is None:
                    break
                await response.write(f"event: {item}\ndata: {{}}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._phones.discard(queue)
        return response


class ThreadedLookalike(ThreadedServer[Lookalike]):
    """A :class:`Lookalike` on its own thread and event loop, for synchronous callers."""

    def __init__(self, config: LookalikeConfig | None = None) -> None:
        super().__init__(Lookalike(config), name="lookalike")

    def state(self) -> dict[str, Any]:
        """A snapshot taken on the server's loop."""
        return self.run(self.server.state)


def run_in_thread(
    config: LookalikeConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> ThreadedLookalike:
    """Starts a look-alike on a background thread; call ``.stop()`` (or use ``with``) when done."""
    server = ThreadedLookalike(config)
    server.start(host, port)
    return server


def _announce(url: str) -> None:
    print(f"bot page (WhatsApp Web look-alike): {url}/", flush=True)
    print(f"phone (customers, groups, owner):   {url}/phone", flush=True)
    print(f"control state:                      {url}/control/state", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.dev.lookalike``: serve in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.dev.lookalike",
        description="A WhatsApp Web look-alike (window.WPP with WA-JS shapes) for development.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--me", default="10000@c.us", help="the bot's account id")
    parser.add_argument("--name", default="Lookalike Bot", help="the bot's display name")
    parser.add_argument(
        "--ack-delay", type=float, default=0.3, help="seconds from sent (1) to delivered (2)"
    )
    parser.add_argument("--no-seed", action="store_true", help="start without Alice, Bob, group")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep the world and the login in this JSON file across restarts",
    )
    parser.add_argument(
        "--own-ids",
        action="store_true",
        help="sendTextMessage assigns its own message ids, ignoring the messageId option",
    )
    args = parser.parse_args(argv)
    config = LookalikeConfig(
        me=args.me,
        me_name=args.name,
        ack_delay_s=args.ack_delay,
        seed=not args.no_seed,
        keep_message_ids=not args.own_ids,
        state_file=args.state_file,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_stopped(Lookalike(config), args.host, args.port, _announce))
    return 0
