"""The gateway: one WhatsApp account's browser, bridged to Kafka, restarted when it fails.

Inbound: the page's events arrive through a Playwright binding in page order and go into one
queue; a single pump produces them to ``wa.inbound`` and waits for the broker's ack before it
marks the chat read. A crash before the ack leaves the message unread, and the catch-up after
every (re)start fetches unread messages (dedupe in the guard absorbs the overlap).

Inbound events besides new messages: edits (``chat.msg_edited``), deletes for everyone
(``chat.msg_revoke``) and reactions (``chat.new_reaction``) become ``InboundMessage`` records
with ``event`` edit / revoke / reaction on ``wa.inbound`` too (see
:func:`~pipeline.gateway.messages.event_from_page`).

Ids: every ``@lid`` id is resolved through the account's LID map (its own LID from
``WPP.conn.getMyUserLid``, people's from ``WPP.contact.getPnLidEntry`` and the contact list)
before a record is produced; new pairs go to the ``lid_map`` changelog table.

Outbound: :meth:`Gateway.send` is called by the deliver agent (``agents/deliver.py``), for
many chats at once. It waits while the page is not ready (the record stays uncommitted),
asks WA-JS to send under our own derived message id, and before every send looks among the
chat's last messages for that id or, because WhatsApp Web may assign its own id, for our
text sent since the record was created, so a crash between a send and its record never
sends the reply twice. A send is ``sent`` only when WhatsApp took it; a refusal, an
unregistered number, an unknown chat or no answer within ``send_timeout_s`` is ``failed``
with a reason naming the cause (:mod:`pipeline.gateway.outcomes`), permanent ones at once,
passing ones after retries that wait outside the account's send lock. The bot's own
messages are recognised by the requested id, the returned id, or as the echo of a send in
flight (:mod:`pipeline.gateway.sends`).

State: starting -> qr -> authenticated -> ready, and disconnected / logged_out / conflict,
each reported to ``wa.events``. A page crash, a browser crash or a conflict restarts the
browser with exponential backoff; a logout goes back to the QR screen in the same page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.config.settings import Settings
from pipeline.gateway.messages import (
    EVENT_KINDS,
    event_from_page,
    find_own_send,
    inbound_from_page,
    inner_id,
    lids_in,
    message_id_for,
    own_ack,
)
from pipeline.gateway.outcomes import Verdict, judge_send, timed_out
from pipeline.gateway.page import (
    PageGoneError,
    WhatsAppPage,
    WhatsAppRefusedError,
    launch_browser,
    own_session_driver,
)
from pipeline.gateway.qr import png_qr, terminal_qr
from pipeline.gateway.sends import InFlight, OwnSends, SentRef
from pipeline.kafka.topics import Topics
from schemas import (
    DeadLetter,
    DeliveryReceipt,
    GatewayEvent,
    GatewayState,
    InboundMessage,
    OutboundMessage,
    canonical_chat_id,
)
from tables import LidMap, sent_as

log = logging.getLogger(__name__)

#: How often the page's state is polled, as a safety net for events the bridge missed.
POLL_S = 1.0
#: A session that stayed up this long resets the restart backoff.
STABLE_S = 60.0
#: Sent message ids remembered, to tell the bot's own messages from the owner's.
REMEMBER_SENT = 10_000
#: Own messages of a chat looked at before a send, for a copy sent before a crash.
RECENT_CHECK = 50
#: A LID WA-JS could not resolve is asked about again after this many seconds.
LID_RETRY_S = 300.0
#: Contacts read for LID pairs when the page gets ready.
CONTACT_LIDS = 5000
#: How long after its "typing..." a send keeps the account's send lock while WhatsApp Web
#: has not answered: a healthy send is answered well within it, and one that hangs then
#: waits for its answer without holding the other chats' sends.
SEND_HOLD_S = 2.0
#: The wait before the first retry of a send that failed for a passing reason, doubled for
#: each further one, and the longest wait.
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class SendOutcome:
    status: Literal["sent", "duplicate_skipped", "failed"]
    wa_message_id: str | None = None
    reason: str | None = None


class Gateway:
    """One account's WhatsApp Web session. Start :meth:`run` as an app task."""

    def __init__(self, settings: Settings, topics: Topics) -> None:
        self.settings = settings
        self.topics = topics
        self.name = settings.gateway_name
        self.state: GatewayState = "starting"
        self.account_id: str | None = None
        self.qr_code: str | None = None
        self.restarts = 0
        self.ready = asyncio.Event()
        self.url = settings.gateway_url
        self._page: WhatsAppPage | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        #: The bot's sends: by requested id, returned id, or echo while in flight.
        self.own = OwnSends(REMEMBER_SENT)
        #: The sink's sent_messages table (set by the wiring): what earlier runs sent.
        self.sent_table: Any = None
        #: ``<n>@lid`` -> phone id; the wiring puts the ``lid_map`` table under it.
        self.lids = LidMap()
        #: Where new LID pairs go (set by the wiring; an agent writes them to the table).
        self.lid_topic: Any = None
        self._lid_asked: dict[str, float] = {}
        self._stopping = False
        self._last_send_chat: dict[str, float] = {}
        self._last_send = 0.0
        self._ended: asyncio.Event = asyncio.Event()
        self._end_reason = ""
        self._send_lock = asyncio.Lock()
        self._logout_reason: str | None = None

    # --- the session loop ------------------------------------------------------

    async def run(self) -> None:
        """Keep a browser session up until cancelled (the worker stopping)."""
        backoff = self.settings.gateway_restart_backoff_s
        chromium = self.settings.chromium_path
        if chromium and not Path(chromium).is_file():
            log.error(
                "gateway: no Chromium at %s: install it (Debian/Ubuntu: apt-get install "
                "chromium) or set WABOT_CHROMIUM_PATH; the gateway is not started",
                chromium,
            )
            return
        own_session_driver()
        async with async_playwright() as playwright:
            while True:
                started = time.monotonic()
                reason = await self._session(playwright)
                if time.monotonic() - started > STABLE_S:
                    backoff = self.settings.gateway_restart_backoff_s
                self.restarts += 1
                log.warning("gateway: %s; restarting the browser in %.1fs", reason, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.gateway_restart_backoff_max_s)

    async def _session(self, playwright: Playwright) -> str:
        """One browser from launch to its end; returns why it ended."""
        self._ended = asyncio.Event()
        self._end_reason = "the browser closed"
        self._queue = asyncio.Queue()
        await self._set_state("starting")
        context: BrowserContext | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            context = await launch_browser(
                playwright,
                self.settings.profile_dir,
                executable=self.settings.chromium_path,
                headless=self.settings.gateway_headless,
            )
            context.on("close", lambda _: self._end("the browser closed"))
            page = await WhatsAppPage.open(
                context, self.url, self._on_page_event, self.settings.gateway_page_timeout_s
            )
            page.page.on("crash", lambda _: self._end("the page crashed"))
            page.page.on("close", lambda _: self._end("the page closed"))
            self._page = page
            tasks = [
                asyncio.create_task(self._pump(page), name="gateway-pump"),
                asyncio.create_task(self._poll(page), name="gateway-poll"),
            ]
            recycle_s = self.settings.gateway_recycle_hours * 3600 or None
            try:
                await asyncio.wait_for(self._ended.wait(), recycle_s)
            except TimeoutError:
                # Chromium's memory grows over days of WhatsApp Web; a fresh browser costs
                # a reload and a catch-up, and outbound records wait meanwhile.
                self._end("the scheduled browser restart (WABOT_GATEWAY_RECYCLE_HOURS)")
            return self._end_reason
        except (PlaywrightError, PageGoneError, OSError) as exc:
            return f"the browser failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        finally:
            self._page = None
            self.ready.clear()
            if _cancelling():
                # The worker is stopping: its producer may be gone already, so the state
                # is not reported (the next start reports "starting").
                self._stopping = True
                self._end_reason = "the gateway stopped"
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._stopping:
                self.state = "disconnected"
                log.info("gateway %s: stopped; closing the browser", self.name)
            elif self.state not in ("logged_out", "conflict"):
                await self._set_state("disconnected", self._end_reason)
            if context is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(context.close(), 15)

    def _end(self, reason: str) -> None:
        if not self._ended.is_set():
            self._end_reason = reason
            self._ended.set()

    def _on_page_event(self, kind: str, data: Any) -> None:
        self._queue.put_nowait((kind, data))

    async def _poll(self, page: WhatsAppPage) -> None:
        """Feed the page's state into the pump now and then; end the session if it hangs."""
        while True:
            await asyncio.sleep(POLL_S)
            try:
                state = await asyncio.wait_for(page.state(), 30)
            except (PageGoneError, TimeoutError) as exc:
                if page.page.is_closed():
                    self._end("the page closed")
                    return
                log.debug("gateway: state poll failed: %s", exc)
                continue
            except WhatsAppRefusedError as exc:
                log.debug("gateway: state poll failed: %s", exc)
                continue
            self._queue.put_nowait(("poll", state))

    # --- page events, in order -----------------------------------------------------

    async def _pump(self, page: WhatsAppPage) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            read: list[str] = []
            for kind, data in batch:
                try:
                    if kind == "message":
                        chat = await self._inbound(data)
                        if chat is not None and chat not in read:
                            read.append(chat)
                    elif kind in EVENT_KINDS:
                        await self._inbound_event(kind, data)
                    else:
                        await self._page_event(page, kind, data)
                except (PageGoneError, WhatsAppRefusedError) as exc:
                    log.warning("gateway: handling %s failed: %s", kind, exc)
            # Only now is every message of the batch on Kafka: mark the chats read.
            for chat in read:
                with contextlib.suppress(PageGoneError, WhatsAppRefusedError):
                    await page.mark_read(chat)

    async def _page_event(self, page: WhatsAppPage, kind: str, data: Any) -> None:
        if kind == "qr":
            if data and self.state != "ready":
                await self._show_qr(str(data))
        elif kind == "authenticated":
            if self.state not in ("authenticated", "ready"):
                await self._set_state("authenticated")
        elif kind in ("main_ready", "attached"):
            await self._check(page, await page.state())
        elif kind == "poll":
            await self._check(page, data)
        elif kind == "logout_reason":
            self._logout_reason = str(data) if data else None
        elif kind == "logout":
            self.ready.clear()
            await self._set_state("logged_out", self._logout_reason)
        elif kind == "stream_mode" and data == "CONFLICT":
            await self._conflict()
        elif kind == "ack":
            await self._acks(data)

    async def _check(self, page: WhatsAppPage, state: dict[str, Any]) -> None:
        """Bring our state in line with the page's (events can be missed around reloads)."""
        if not state.get("attached"):
            return
        if state.get("streamMode") == "CONFLICT":
            if self.state != "conflict":
                await self._conflict()
            return
        if state.get("authenticated") and state.get("mainReady"):
            if self.state != "ready" and state.get("me"):
                await self._become_ready(page, str(state["me"]), state.get("meLid"))
            return
        if self.state == "ready":
            self.ready.clear()
            await self._set_state("disconnected", "WhatsApp Web is no longer logged in")
        if not state.get("authenticated"):
            code = await page.auth_code()  # also catches a rotated code whose event was missed
            if code and code != self.qr_code:
                await self._show_qr(code)

    async def _become_ready(self, page: WhatsAppPage, me: str, me_lid: object = None) -> None:
        self.account_id = canonical_chat_id(me)
        self.qr_code = None
        if self.state != "authenticated":
            await self._set_state("authenticated")
        await self._learn_lids(page, me_lid)
        caught = await page.unread(self.settings.gateway_catchup_messages)
        chats: list[str] = []
        for raw in caught:
            chat = await self._inbound(raw)
            if chat is not None and chat not in chats:
                chats.append(chat)
        for chat in chats:
            await page.mark_read(chat)
        if caught:
            log.info("gateway: caught up %d unread messages in %d chats", len(caught), len(chats))
        await self._set_state("ready")
        self.ready.set()

    async def _conflict(self) -> None:
        self.ready.clear()
        await self._set_state("conflict", "WhatsApp Web was opened elsewhere")
        self._end("WhatsApp Web was opened elsewhere (conflict)")

    async def _show_qr(self, code: str) -> None:
        if code == self.qr_code and self.state == "qr":
            return
        first = self.state != "qr"
        self.qr_code = code
        await self._set_state("qr", qr=code)
        port = self.settings.web_port
        png = f"http://127.0.0.1:{port}/gateway/qr.png"
        if self.settings.gateway_lookalike:
            # The look-alike's phone page scans for you: one line, not a code a minute.
            if first:
                log.info(
                    "gateway %s: waiting to be linked: press Scan QR on %sphone (the code: %s)",
                    self.name,
                    self.settings.gateway_url,
                    png,
                )
            return
        # To the terminal itself: Faust redirects sys.stdout into its log as WARNING lines.
        print(
            f"\nScan this code with WhatsApp on the phone (Linked devices), or open "
            f"{png}\n{terminal_qr(code)}",
            file=sys.__stdout__ or sys.stdout,
            flush=True,
        )

    # --- to Kafka ----------------------------------------------------------------

    async def _inbound(self, raw: Any) -> str | None:
        """Produce one page message and wait for the broker; returns its chat for mark-read."""
        account = await self._inbound_account()
        if not isinstance(raw, dict) or not account:
            await self._dead_letter(raw, "a message arrived before the account id was known")
            return None
        await self._resolve_lids(raw)
        quoted = str(raw.get("quotedId") or "")
        try:
            record = inbound_from_page(
                raw,
                account_id=account,
                sent_by_bot=False,
                lid_map=self.lids,
                quoted_from_me=bool(quoted) and self._known(quoted) is not None,
            )
        except ValueError as exc:
            await self._dead_letter(raw, f"invalid message from WhatsApp Web: {exc}")
            return None
        if record.from_me:
            sent = self._known(record.message_id) or self.own.echo(
                record.chat_id, record.body, record.message_id
            )
            if sent is not None:
                record = record.model_copy(update={"sent_by_bot": True, "trace_id": sent.trace_id})
        await self._produce(record)
        return None if record.from_me else record.chat_id

    async def _inbound_event(self, kind: str, raw: Any) -> None:
        """Produce an edit, revoke or reaction as an ``InboundMessage`` with that ``event``."""
        account = await self._inbound_account()
        if not isinstance(raw, dict) or not account:
            await self._dead_letter(raw, f"a {kind} arrived before the account id was known")
            return
        await self._resolve_lids(raw)
        try:
            record = event_from_page(kind, raw, account_id=account, lid_map=self.lids)
        except ValueError as exc:
            await self._dead_letter(raw, f"invalid {kind} from WhatsApp Web: {exc}")
            return
        await self._produce(record)

    async def _inbound_account(self) -> str | None:
        if self.account_id is None and self._page is not None:
            me = (await self._page.state()).get("me")
            return str(me) if me else None
        return self.account_id

    async def _produce(self, record: InboundMessage) -> None:
        key = record.chat_id.encode()
        value = record.model_dump_json().encode()
        await (await self.topics.inbound.send(key=key, value=value))

    # --- LIDs ----------------------------------------------------------------------

    async def _learn_lids(self, page: WhatsAppPage, me_lid: object) -> None:
        """At ready: the account's own LID (so mentions of it are mentions of us) and the
        pairs of the contact list."""
        if me_lid and self.account_id:
            await self._learn(str(me_lid), self.account_id)
        try:
            pairs = await page.contact_lids(CONTACT_LIDS)
        except (PageGoneError, WhatsAppRefusedError) as exc:
            log.debug("gateway: contact LIDs not read: %s", exc)
            return
        for lid, phone in pairs:
            await self._learn(lid, phone, wait=False)

    async def _resolve_lids(self, raw: dict[str, Any]) -> None:
        """Ask WA-JS for the phone id of every LID in ``raw`` the map does not know yet."""
        page = self._page
        now = time.monotonic()
        wanted = [
            lid
            for lid in lids_in(raw)
            if lid not in self.lids and now - self._lid_asked.get(lid, -LID_RETRY_S) >= LID_RETRY_S
        ]
        if not wanted or page is None:
            return
        try:
            pairs = await page.lid_entries(wanted)
        except (PageGoneError, WhatsAppRefusedError) as exc:
            log.debug("gateway: LIDs not resolved: %s", exc)
            return
        for lid, phone in pairs:
            await self._learn(lid, phone)
        if len(self._lid_asked) > REMEMBER_SENT:
            self._lid_asked.clear()  # bounded: unknown LIDs are simply asked again
        for lid in wanted:
            if lid not in self.lids:
                self._lid_asked[lid] = now  # stays an @lid id until WA-JS knows it

    async def _learn(self, lid: str, phone: str, *, wait: bool = True) -> None:
        """Add a pair to the map; a new one is produced for the ``lid_map`` table."""
        try:
            lid, phone = canonical_chat_id(lid), canonical_chat_id(phone)
        except ValueError:
            return
        if not lid.endswith("@lid") or not phone.endswith("@c.us"):
            return
        if not self.lids.learn(lid, phone) or self.lid_topic is None:
            return
        log.info("gateway: %s is %s", lid, phone)
        try:
            sent = await self.lid_topic.send(key=lid.encode(), value=phone.encode())
            if wait:
                await sent
        except Exception as exc:  # the pair stays known to this run; learned again later
            log.warning("gateway: could not record %s -> %s: %s", lid, phone, exc)

    async def _dead_letter(self, raw: Any, reason: str) -> None:
        log.warning("gateway: dead letter: %s", reason)
        letter = DeadLetter(
            source_topic="whatsapp-web",
            partition=-1,
            offset=-1,
            raw=json.dumps(raw, default=str).encode(),
            reason=reason[:2000],
            error_type="ValueError",
            agent="gateway",
        )
        await (await self.topics.dlq.send(key=self.name.encode(), value=letter))

    async def _set_state(
        self, state: GatewayState, reason: str | None = None, qr: str | None = None
    ) -> None:
        previous, self.state = self.state, state
        # A new QR code is a line for whoever scans from the log; the look-alike scans itself.
        if previous != state or (qr and not self.settings.gateway_lookalike):
            log.info("gateway %s: %s%s", self.name, state, f" ({reason})" if reason else "")
        event = GatewayEvent(
            gateway=self.name,
            account_id=self.account_id,
            kind="state",
            state=state,
            reason=reason,
            qr=qr,
        )
        await self._event(event)

    async def _event(self, event: GatewayEvent) -> None:
        key = (event.account_id or self.name).encode()
        try:
            await (await self.topics.events.send(key=key, value=event))
        except Exception:  # a state report must never take the gateway down
            if self._stopping:
                log.info("gateway: %s not reported: the worker is stopping", event.kind)
            else:
                log.exception("gateway: could not write %s to %s", event.kind, "wa.events")

    async def _acks(self, data: Any) -> None:
        if not isinstance(data, dict) or not data.get("ids") or data.get("ack") is None:
            return
        ack = int(data["ack"])
        ids = [str(i) for i in data["ids"]]
        with contextlib.suppress(ValueError):
            await self._event(
                GatewayEvent(
                    gateway=self.name,
                    account_id=self.account_id,
                    kind="ack",
                    ack=max(-1, min(ack, 4)),
                    chat_id=data.get("chat"),
                    message_ids=ids,
                )
            )
        for wa_id in ids:
            sent = self._known(wa_id)
            if sent is None or ack <= sent.ack:
                continue
            sent.ack = ack
            status: Literal["delivered", "read"] | None = (
                "read" if ack >= 3 else "delivered" if ack == 2 else None
            )
            if status is None:
                continue
            receipt = DeliveryReceipt(
                outbound_id=sent.outbound_id,
                chat_id=sent.chat_id,
                account_id=sent.account_id,
                status=status,
                wa_message_id=wa_id,
                trace_id=sent.trace_id,
            )
            await (await self.topics.delivery.send(key=sent.chat_id.encode(), value=receipt))

    # --- sending (called by the deliver agent) ------------------------------------

    async def account(self) -> str:
        """Our account id, once the page is ready (waits until then)."""
        while True:
            await self.ready.wait()
            if self.account_id is not None:
                return self.account_id

    async def send(self, message: OutboundMessage) -> SendOutcome:
        """Send ``message`` once: waits for a ready page, never sends a duplicate.

        Outcomes: ``sent`` when WhatsApp took the message (WA-JS's ``messageSendResult``
        ``OK``, or an ack of 1 or more; see :mod:`pipeline.gateway.outcomes`), its
        ``wa_message_id`` the id the message has in the chat (the one WA-JS returned, since
        WhatsApp Web may not keep the id we asked for, or the one found there);
        ``duplicate_skipped`` when it was in the chat before this call; otherwise ``failed``
        with a ``reason`` that starts with the cause (``unregistered``, ``chat not found``,
        ``refused``, ``timeout``...).

        Permanent failures (an unregistered number, a chat WhatsApp cannot find) are reported
        at once. Passing ones (a refusal such as ``ERROR_NETWORK``, an exception, no answer
        within ``send_timeout_s``) are retried ``send_retries`` times after 2, 4, 8... s,
        and the account's send lock is not held while waiting, so other chats' sends go on.
        Before every try and before giving up the chat is looked at: a send that got through
        without an answer is recorded ``sent`` and never made twice; one still waiting there
        unconfirmed (ack 0) is not sent again either.

        Calls for different chats may run at once; the calls for one chat must come one at a
        time, in order (the deliver agent keeps each chat's order). Never raises for a failed
        send; cancellation propagates.
        """
        retries = self.settings.send_retries
        failures = 0
        tried = False  # an earlier try of this call may have put the message in the chat
        verdict = last = Verdict("transient", "error: not tried yet")  # now's, the last try's
        flights: list[InFlight] = []
        try:
            while True:
                account = await self.account()
                page = self._page
                if page is None:
                    await asyncio.sleep(0.1)
                    continue
                wa_id = message_id_for(account, message.outbound_id)
                giving_up = failures > retries
                try:
                    found = await self._already_sent(page, message, wa_id)
                    if found is not None:
                        outcome = self._found(message, account, found, tried)
                        if outcome is not None:
                            return outcome
                        verdict = _unconfirmed(last, found[1])
                    if giving_up:
                        return _failed(verdict, failures)
                    if found is None:
                        tried = True
                        verdict = last = await self._attempt(page, message, account, wa_id, flights)
                except PageGoneError as exc:
                    log.warning("gateway: page gone while sending %s: %s", message.outbound_id, exc)
                    await self._wait_not_ready(page)
                    continue
                except (WhatsAppRefusedError, TimeoutError) as exc:
                    if giving_up:
                        return _failed(verdict, failures)
                    verdict = last = _page_failed(exc, self.settings.send_timeout_s)
                if verdict.sent:
                    return SendOutcome("sent", verdict.wa_id)
                if verdict.permanent:
                    log.warning("gateway: %s not sent: %s", message.outbound_id, verdict.reason)
                    return SendOutcome("failed", None, verdict.reason)
                failures += 1
                if failures > retries:
                    continue  # one more look at the chat, then the record is failed
                wait = min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S)
                log.warning(
                    "gateway: send of %s failed (%s); retry %d of %d in %.0fs",
                    message.outbound_id,
                    verdict.reason,
                    failures,
                    retries,
                    wait,
                )
                await asyncio.sleep(wait)  # outside the send lock: other chats go on
        finally:
            for flight in flights:
                self.own.abort(flight)

    def _found(
        self, message: OutboundMessage, account: str, found: tuple[str, int], tried: bool
    ) -> SendOutcome | None:
        """What a copy of ``message`` found in its chat (``(id, ack)``) means: a duplicate
        when this call had not tried yet, sent when an earlier try got it there and WhatsApp
        has it (ack 1 or more), None while it waits there unconfirmed (never sent again)."""
        found_id, ack = found
        if not tried:
            return SendOutcome("duplicate_skipped", found_id, "already in the chat")
        self.own.keep(
            found_id, SentRef(message.outbound_id, message.chat_id, account, message.trace_id)
        )
        return SendOutcome("sent", found_id) if ack >= 1 else None

    async def _attempt(
        self,
        page: WhatsAppPage,
        message: OutboundMessage,
        account: str,
        wa_id: str,
        flights: list[InFlight],
    ) -> Verdict:
        """One try: the pacing gaps, then "typing..." and the hand-over under the account's
        send lock, then WhatsApp's answer, waited for at most ``send_timeout_s`` from the
        call. The lock is let go once the answer came or ``SEND_HOLD_S`` after the typing,
        so a send WhatsApp Web does not answer holds no other chat. The in-flight record of
        the send goes into ``flights`` (ended by the caller) unless WhatsApp took it.
        Raises :class:`PageGoneError` or :class:`WhatsAppRefusedError` from the page."""
        chat = message.chat_id
        timeout = self.settings.send_timeout_s
        typing_ms = self._typing_ms(message.text)
        await self._pace_chat(chat)  # this chat's gap: no other chat waits for it
        async with self._send_lock:
            await self._pace_account()
            ref = SentRef(message.outbound_id, chat, account, message.trace_id)
            flight = self.own.begin(chat, message.text, ref, wa_id)
            flights.append(flight)
            started = time.monotonic()
            call = asyncio.ensure_future(page.send(chat, message.text, wa_id, typing_ms))
            try:
                await asyncio.wait({call}, timeout=min(typing_ms / 1000 + SEND_HOLD_S, timeout))
            except BaseException:
                call.cancel()
                raise
            finally:
                self._last_send_chat[chat] = self._last_send = time.monotonic()
        try:
            answer = await asyncio.wait_for(call, max(0.0, started + timeout - time.monotonic()))
        except TimeoutError:
            return timed_out(timeout)
        verdict = judge_send(answer, chat)
        if verdict.sent:
            flights.remove(flight)
            returned = inner_id(verdict.wa_id) if verdict.wa_id else None
            return Verdict("sent", wa_id=self.own.finish(flight, returned))
        return verdict

    async def _already_sent(
        self, page: WhatsAppPage, message: OutboundMessage, wa_id: str
    ) -> tuple[str, int] | None:
        """``(id, ack)`` of ``message`` if it is in its chat already (sent before a crash, or
        by an earlier try that got no answer), found by the id we asked for or by its text
        since the record's creation; sends WhatsApp refused (ack -1) do not count. Raises
        :class:`TimeoutError` when the page does not answer within ``send_timeout_s``."""

        def taken(found: str) -> bool:
            known = self._known(found)
            return known is not None and known.outbound_id != message.outbound_id

        recent = await asyncio.wait_for(
            page.recent_own(message.chat_id, RECENT_CHECK), self.settings.send_timeout_s
        )
        found = find_own_send(
            recent,
            wa_id=wa_id,
            text=message.text,
            since=message.created_at.timestamp(),
            taken=taken,
        )
        return None if found is None else (found, own_ack(recent, found))

    async def _wait_not_ready(self, page: WhatsAppPage) -> None:
        """After a failed call, wait until this page is replaced or confirmed alive."""
        deadline = time.monotonic() + 10
        while self._page is page and not page.page.is_closed() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    def _known(self, wa_id: str) -> SentRef | None:
        """What we sent as ``wa_id``: remembered since this start, or in the sink's table
        (sent before a restart, whose acks and echoes still arrive)."""
        sent = self.own.get(wa_id)
        if sent is not None or self.sent_table is None:
            return sent
        found = sent_as(self.sent_table, wa_id)
        if found is None:
            return None
        try:
            sent = SentRef(
                found["outbound_id"], found["chat_id"], found["account_id"], found["trace_id"]
            )
        except KeyError:
            return None
        self.own.keep(wa_id, sent)
        return sent

    def _typing_ms(self, text: str) -> int:
        s = self.settings
        return int(min(len(text) * s.send_typing_ms_per_char / 1000, s.send_typing_max_s) * 1000)

    async def _pace_chat(self, chat: str) -> None:
        """Keep the configured gap between two sends to ``chat`` (bursts look like spam)."""
        due = self._last_send_chat.get(chat, 0.0) + self.settings.send_min_gap_chat_s
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)

    async def _pace_account(self) -> None:
        """Keep the configured gap between two sends of the account (under the send lock)."""
        due = self._last_send + self.settings.send_min_gap_account_s
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)

    # --- for the web views -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "gateway": self.name,
            "state": self.state,
            "account_id": self.account_id,
            "url": self.url,
            "restarts": self.restarts,
            "qr_available": self.qr_code is not None,
        }

    def qr_png(self) -> bytes | None:
        return png_qr(self.qr_code) if self.qr_code else None

    async def screenshot(self) -> bytes | None:
        if self._page is None:
            return None
        try:
            return await self._page.screenshot()
        except PageGoneError:
            return None


def _failed(verdict: Verdict, tries: int) -> SendOutcome:
    """A send given up after its retries; the reason starts with the last try's cause."""
    return SendOutcome("failed", None, f"{verdict.reason} (tried {tries} times)")


def _page_failed(exc: Exception, timeout_s: float) -> Verdict:
    """A page call of a send that raised (or did not answer within ``timeout_s``)."""
    if isinstance(exc, TimeoutError):
        return Verdict("transient", f"timeout: WhatsApp Web did not answer in {timeout_s:g}s")
    return Verdict("transient", f"error: {str(exc)[:300] or type(exc).__name__}")


def _unconfirmed(verdict: Verdict, ack: int) -> Verdict:
    """An earlier try's message is in the chat, but WhatsApp has not confirmed it."""
    return Verdict(
        "transient",
        f"{verdict.reason}; the message is in the chat unconfirmed (ack {ack}), not sent again",
    )


def _cancelling() -> bool:
    """True inside a task that is being cancelled (the worker stopping)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
