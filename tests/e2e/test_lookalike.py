"""The WhatsApp Web look-alike in real Chromium: login, WA-JS event shapes, acks, catch-up.

Each test starts its own look-alike server (cheap) and a fresh browser context in one shared
Chromium; the login-persistence test uses a persistent profile, the way the gateway runs it. Page
events are recorded by an init script that hooks ``WPP.onAny`` at DOMContentLoaded, as a gateway
would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)

from pipeline.broker import free_port
from pipeline.dev.lookalike import Lookalike, LookalikeConfig
from pipeline.gateway.page import CHROMIUM_ARGS

# One event loop for the module, so one Chromium serves every test.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ME = "10000@c.us"
ALICE = "4915111111111@c.us"
BOB = "4915222222222@c.us"
GROUP = "120363000000000001@g.us"
CAROL = "4917333333333@c.us"

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM = "/usr/bin/chromium"

VIEWPORT: ViewportSize = {"width": 1200, "height": 720}
"""Wide enough for the chat list and the conversation side by side."""

RECORDER = """
document.addEventListener('DOMContentLoaded', () => {
  window.__events = [];
  window.__raw = [];
  WPP.onAny((name, ...args) => {
    window.__raw.push({ name, args });
    window.__events.push({ name, args: JSON.parse(JSON.stringify(args, (k, v) => v ?? null)) });
  });
});
"""

MSG_SHAPE = """
(m) => ({
  idIsObject: typeof m.id === 'object',
  idSerialized: m.id._serialized,
  idToString: m.id.toString(),
  idFromMe: m.id.fromMe,
  idId: m.id.id,
  idRemote: m.id.remote._serialized,
  idParticipant: m.id.participant ? m.id.participant._serialized : null,
  fromIsObject: typeof m.from === 'object',
  from: m.from._serialized,
  fromToString: m.from.toString(),
  fromUser: m.from.user,
  fromServer: m.from.server,
  to: m.to._serialized,
  author: m.author ? m.author._serialized : null,
  body: m.body,
  type: m.type,
  t: m.t,
  isNewMsg: m.isNewMsg,
  ack: m.ack,
  isGroupMsg: m.isGroupMsg,
  isMedia: m.isMedia,
  mentioned: (m.mentionedJidList || []).map((w) => w._serialized),
  quotedStanzaID: m.quotedStanzaID ?? null,
})
"""


class Control:
    """The look-alike's /control API."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self._session = session

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.post(f"{self.base_url}/control/{path}", json=body or {}) as r:
            data = await r.json()
            assert r.status == 200, data
            return data

    async def state(self) -> dict[str, Any]:
        async with self._session.get(f"{self.base_url}/control/state") as r:
            return dict(await r.json())

    async def wait_state(self, check: Any, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state()
            if check(state):
                return state
            assert time.monotonic() < deadline, f"state never matched: {state}"
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="module")
async def lookalike() -> AsyncIterator[Lookalike]:
    server = Lookalike(LookalikeConfig(ack_delay_s=0.2, logout_reload_s=0.3))
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def control(lookalike: Lookalike) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession() as session:
        yield Control(lookalike.base_url, session)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pw() -> AsyncIterator[Playwright]:
    async with async_playwright() as playwright:
        yield playwright


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium(pw: Playwright) -> AsyncIterator[Browser]:
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    await browser.close()


async def prepare(context: BrowserContext) -> BrowserContext:
    context.set_default_timeout(8000)
    await context.add_init_script(RECORDER)
    return context


async def launch(pw: Playwright, profile: Path) -> BrowserContext:
    """A Chromium with a persistent profile, as the gateway runs it."""
    context = await pw.chromium.launch_persistent_context(
        user_data_dir=str(profile),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport=VIEWPORT,
    )
    return await prepare(context)


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Browser) -> AsyncIterator[BrowserContext]:
    context = await prepare(await chromium.new_context(viewport=VIEWPORT))
    yield context
    await context.close()


async def open_bot(context: BrowserContext, base_url: str) -> Page:
    page = context.pages[0] if context.pages else await context.new_page()
    await page.goto(f"{base_url}/")
    return page


async def login(page: Page, control: Control) -> None:
    await page.wait_for_selector("#qr-code:not(:empty)")
    await control.post("scan")
    await page.wait_for_function("WPP.conn.isMainReady()")


async def events(page: Page, name: str) -> list[list[Any]]:
    result = await page.evaluate(
        "n => window.__events.filter(e => e.name === n).map(e => e.args)", name
    )
    return list(result)


async def wait_event(page: Page, name: str, count: int = 1) -> None:
    await page.wait_for_function(
        "([n, c]) => (window.__events || []).filter(e => e.name === n).length >= c",
        arg=[name, count],
    )


async def last_message_shape(page: Page) -> dict[str, Any]:
    shape = await page.evaluate(
        f"""() => {{
          const e = window.__raw.filter(e => e.name === 'chat.new_message').pop();
          return ({MSG_SHAPE})(e.args[0]);
        }}"""
    )
    return dict(shape)


async def screenshot(page: Page, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / name))


async def test_qr_flow_logs_in(browser: BrowserContext, control: Control) -> None:
    page = await open_bot(browser, control.base_url)
    qr = page.locator("#qr-code")
    await qr.wait_for()
    await page.wait_for_function("document.getElementById('qr-code').textContent.length > 0")
    assert await page.evaluate("WPP.isReady && WPP.conn.isAuthenticated() === false")
    assert await page.evaluate("WPP.conn.isMainReady()") is False
    assert await page.evaluate("WPP.version") == "4.6.0-lookalike"
    assert "lookalike" in await page.evaluate("WPP.conn.getBuildConstants().VERSION_STR")
    auth = await page.evaluate("WPP.conn.getAuthCode()")
    state = await control.state()
    assert state["login"] == "qr"
    assert auth == state["auth_code"]
    assert auth["type"] == "multidevice"
    assert auth["fullCode"] == ",".join(
        [auth["ref"], auth["staticKeyPair"], auth["identityKeyPair"], auth["secretKey"]]
    )
    assert await qr.text_content() == auth["fullCode"]
    assert (await events(page, "conn.auth_code_change"))[0] == [auth]
    await page.wait_for_function("document.getElementById('qr-image').naturalWidth > 0")
    await screenshot(page, "lookalike-qr.png")

    await control.post("scan")
    await page.wait_for_function("WPP.conn.isMainReady()")
    assert await page.evaluate("WPP.conn.isAuthenticated()")
    assert await page.evaluate("WPP.conn.getMyUserId()._serialized") == ME
    assert await page.evaluate("WPP.conn.getAuthCode()") is None
    names = [e["name"] for e in await page.evaluate("window.__events")]
    assert names.index("conn.authenticated") < names.index("conn.main_ready")
    assert (await events(page, "conn.auth_code_change"))[-1] == [None]
    assert (await control.state())["login"] == "main_ready"


async def test_customer_messages_have_wa_js_shape(
    browser: BrowserContext, control: Control
) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)

    sent = await control.post("message", {"chat": ALICE, "body": "Hallo, habt ihr offen?"})
    await wait_event(page, "chat.new_message")
    m = await last_message_shape(page)
    assert m["idIsObject"] and m["fromIsObject"]
    assert m["idSerialized"] == m["idToString"] == f"false_{ALICE}_{sent['id']}"
    assert sent["serialized"] == m["idSerialized"]
    assert (m["idFromMe"], m["idId"], m["idRemote"]) == (False, sent["id"], ALICE)
    assert (m["from"], m["fromToString"], m["fromUser"], m["fromServer"]) == (
        ALICE,
        ALICE,
        "4915111111111",
        "c.us",
    )
    assert (m["to"], m["author"], m["idParticipant"]) == (ME, None, None)
    assert (m["body"], m["type"], m["isNewMsg"], m["isGroupMsg"]) == (
        "Hallo, habt ihr offen?",
        "chat",
        True,
        False,
    )
    assert abs(m["t"] - time.time()) < 10 and isinstance(m["t"], int)

    # A group message from Bob that @mentions the bot and quotes Alice... in the group.
    first = await control.post("message", {"chat": GROUP, "body": "hi all", "author": ALICE})
    await control.post(
        "message",
        {
            "chat": GROUP,
            "body": "@10000 what do you think?",
            "author": BOB,
            "mentions": [ME],
            "quoted": first["id"],
        },
    )
    await wait_event(page, "chat.new_message", 3)
    g = await last_message_shape(page)
    assert g["idSerialized"].startswith(f"false_{GROUP}_") and g["idSerialized"].endswith(f"_{BOB}")
    assert (g["from"], g["author"], g["idParticipant"], g["to"]) == (GROUP, BOB, BOB, ME)
    assert g["isGroupMsg"] is True and g["mentioned"] == [ME]
    assert g["quotedStanzaID"] == first["id"]

    # The ciphertext placeholder, then the decrypted message with the same id: two events.
    await control.post("message", {"chat": ALICE, "body": "secret", "ciphertext_s": 0.2})
    await wait_event(page, "chat.new_message", 5)
    both = await events(page, "chat.new_message")
    assert both[-2][0]["id"] == both[-1][0]["id"]
    assert [both[-2][0]["type"], both[-1][0]["type"]] == ["ciphertext", "chat"]
    assert await page.evaluate(  # WA-JS hands over the same live model object twice
        "() => { const r = window.__raw.filter(e => e.name === 'chat.new_message');"
        " return r[r.length - 1].args[0] === r[r.length - 2].args[0]; }"
    )
    state = await control.state()
    assert state["messages"][-1]["type"] == "chat" and state["messages"][-1]["live"] is True


async def test_send_text_message_acks_and_phone(browser: BrowserContext, control: Control) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    incoming = await control.post("message", {"chat": ALICE, "body": "Do you deliver?"})
    await wait_event(page, "chat.new_message")
    phone = await browser.new_page()
    await phone.goto(f"{control.base_url}/phone")
    await phone.get_by_test_id("phone-customer").select_option(ALICE)
    await phone.locator(f'[data-testid=phone-msg][data-id="{incoming["id"]}"]').wait_for()

    await page.evaluate(
        "c => { window.__send = WPP.chat.sendTextMessage(c, 'Yes, every day!', "
        "{ delay: 600, quotedMsg: window.__raw.find(e => e.name === 'chat.new_message')"
        ".args[0] }); }",
        ALICE,
    )
    await phone.wait_for_selector("[data-testid=phone-typing][data-typing=true]")
    result = await page.evaluate("window.__send")
    assert result["id"].startswith(f"true_{ALICE}_3EB0")
    assert (result["ack"], result["from"], result["to"]) == (1, ME, ALICE)
    assert result["sendMsgResult"]["messageSendResult"] == "OK"
    inner = result["id"].split("_")[2]

    own = await last_message_shape(page)
    assert (own["idFromMe"], own["idSerialized"], own["from"], own["to"]) == (
        True,
        result["id"],
        ME,
        ALICE,
    )
    assert own["quotedStanzaID"] == incoming["id"]
    await wait_event(page, "chat.msg_ack_change", 2)
    acks = await events(page, "chat.msg_ack_change")
    assert [a[0]["ack"] for a in acks[:2]] == [1, 2]
    assert acks[1][0]["chat"] == ALICE
    assert acks[1][0]["ids"][0]["_serialized"] == result["id"]
    assert await page.evaluate(
        "() => window.__raw.filter(e => e.name === 'chat.msg_ack_change')[1].args[0].ids[0]"
        ".remote.isUser()"
    )

    state = await control.state()
    mine = next(m for m in state["messages"] if m["id"] == inner)
    assert (mine["origin"], mine["ack"], mine["body"], mine["quoted_id"]) == (
        "bot",
        2,
        "Yes, every day!",
        incoming["id"],
    )
    before = next(m for m in state["messages"] if m["id"] == incoming["id"])
    assert before["read_by_page"] is True  # sendTextMessage marks the chat read first
    bubble = phone.locator(f'[data-testid=phone-msg][data-id="{inner}"]')
    await bubble.and_(phone.locator("[data-ack='2']")).wait_for()
    assert await phone.get_by_test_id("phone-typing").text_content() == ""

    await phone.get_by_test_id("phone-read").click()
    await wait_event(page, "chat.msg_ack_change", 3)
    assert (await events(page, "chat.msg_ack_change"))[2][0]["ack"] == 3
    await bubble.and_(phone.locator("[data-ack='3']")).wait_for()
    await phone.get_by_test_id("phone-body").fill("Great, thanks!")
    await phone.get_by_test_id("phone-send").click()
    await wait_event(page, "chat.new_message", 3)
    await screenshot(phone, "lookalike-phone.png")

    await page.locator(f'.chat-item[data-chat-id="{ALICE}"]').click()
    await page.locator(f'[data-testid=message][data-id="{inner}"]').wait_for()
    await screenshot(page, "lookalike-bot.png")


async def test_owner_message_is_from_me(browser: BrowserContext, control: Control) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    await control.post("message", {"chat": BOB, "body": "Is anyone there?"})
    owner = await control.post("owner", {"chat": BOB, "body": "I'll take this one"})
    await wait_event(page, "chat.new_message", 2)
    m = await last_message_shape(page)
    assert (m["idFromMe"], m["idSerialized"], m["from"], m["to"], m["body"]) == (
        True,
        f"true_{BOB}_{owner['id']}",
        ME,
        BOB,
        "I'll take this one",
    )
    assert owner["origin"] == "owner"


async def test_messages_while_closed_are_not_live(
    browser: BrowserContext, control: Control
) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    await page.close()
    await control.wait_state(lambda s: not s["page"]["open"])
    missed = await control.post("message", {"chat": CAROL, "body": "sent while you slept"})
    assert missed["live"] is False

    page = await open_bot(browser, control.base_url)
    await page.wait_for_function("WPP.conn.isMainReady()")
    late = await control.post("message", {"chat": CAROL, "body": "and now"})
    await wait_event(page, "chat.new_message")
    live = await events(page, "chat.new_message")
    assert [e[0]["body"] for e in live] == ["and now"]
    assert late["live"] is True

    chats = await page.evaluate(
        "async () => (await WPP.chat.list()).map(c => [c.id._serialized, c.unreadCount])"
    )
    assert [CAROL, 2] in chats
    history = await page.evaluate(
        f"""async () => (await WPP.chat.getMessages('{CAROL}', {{ count: 10 }}))
              .map(m => [m.id.id, m.body, m.isNewMsg])"""
    )
    assert history == [[missed["id"], "sent while you slept", False], [late["id"], "and now", True]]
    unread = await page.evaluate(
        f"async () => (await WPP.chat.getMessages('{CAROL}', {{ count: -1, onlyUnread: true }}))"
        ".length"
    )
    assert unread == 2
    read = await page.evaluate(f"async () => (await WPP.chat.markIsRead('{CAROL}')).unreadCount")
    assert read == 2
    state = await control.state()
    assert all(m["read_by_page"] for m in state["messages"] if m["chat"] == CAROL)


async def test_login_survives_reload_and_restart(
    pw: Playwright, tmp_path: Path, control: Control
) -> None:
    profile = tmp_path / "profile"
    context = await launch(pw, profile)
    page = await open_bot(context, control.base_url)
    await login(page, control)
    await page.reload()
    await page.wait_for_function("WPP.conn.isMainReady()")
    assert await page.evaluate("WPP.conn.isAuthenticated()")
    assert await events(page, "conn.authenticated") == []  # a restored session is not a new login
    assert await events(page, "conn.main_ready") == [[]]
    await context.close()

    context = await launch(pw, profile)
    try:
        page = await open_bot(context, control.base_url)
        await page.wait_for_function("WPP.conn.isMainReady()")
        assert await page.locator("#screen-main").is_visible()
        assert (await control.state())["login"] == "main_ready"
    finally:
        await context.close()


async def test_names_have_wa_js_shape(browser: BrowserContext, control: Control) -> None:
    """Where WA-JS keeps names: ``notifyName`` and ``senderObj`` (a ContactModel) on a
    message, ``name`` / ``formattedTitle`` / ``contact`` on a ChatModel, a group's subject in
    ``groupMetadata``; a person known only by number has no name, the number as title."""
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    stranger = "4917444444444@c.us"
    await control.post("message", {"chat": ALICE, "body": "Hi"})
    await control.post("message", {"chat": GROUP, "author": BOB, "body": "Hello all"})
    await control.post("message", {"chat": stranger, "body": "Who is this?"})
    await wait_event(page, "chat.new_message", 3)
    shapes = await page.evaluate(
        """() => window.__raw.filter(e => e.name === 'chat.new_message').map(e => {
          const m = e.args[0];
          const chat = WPP.chat.get(m.id.remote);
          return {
            chat: m.id.remote._serialized,
            notifyName: m.notifyName,
            senderName: m.senderObj.name ?? null,
            senderPushname: m.senderObj.pushname ?? null,
            senderId: m.senderObj.id._serialized,
            chatName: chat.name ?? null,
            title: chat.formattedTitle,
            contactName: chat.contact ? chat.contact.name ?? null : null,
            subject: chat.groupMetadata ? chat.groupMetadata.subject : null,
          };
        })"""
    )
    assert shapes == [
        {
            "chat": ALICE,
            "notifyName": "Alice",
            "senderName": "Alice",
            "senderPushname": "Alice",
            "senderId": ALICE,
            "chatName": "Alice",
            "title": "Alice",
            "contactName": "Alice",
            "subject": None,
        },
        {
            "chat": GROUP,
            "notifyName": "Bob",
            "senderName": "Bob",
            "senderPushname": "Bob",
            "senderId": BOB,
            "chatName": "Lookalike friends",
            "title": "Lookalike friends",
            "contactName": None,
            "subject": "Lookalike friends",
        },
        {
            "chat": stranger,
            "notifyName": "",
            "senderName": None,
            "senderPushname": None,
            "senderId": stranger,
            "chatName": None,
            "title": "+4917444444444",
            "contactName": None,
            "subject": None,
        },
    ]
    # The page's own chat list shows the title, as WhatsApp Web does.
    titles = await page.locator(".chat-name").all_text_contents()
    assert {"Alice", "Lookalike friends", "+4917444444444"} <= set(titles)


async def test_world_and_login_survive_a_restart_with_a_state_file(
    pw: Playwright, tmp_path: Path
) -> None:
    """A look-alike with a state file, stopped and started again on the same port (as a
    ``make dev`` worker restart does), keeps its chats, its messages and its logged-in page;
    one without a state file starts afresh."""
    state_file = tmp_path / "data" / "lookalike" / "world.json"
    config = LookalikeConfig(ack_delay_s=0.2, state_file=state_file)
    port = free_port()
    first = Lookalike(config)
    base = await first.start(port=port)
    profile = tmp_path / "profile"
    context = await launch(pw, profile)
    async with aiohttp.ClientSession() as session:
        control = Control(base, session)
        try:
            page = await open_bot(context, base)
            await login(page, control)
            await control.post("contact", {"id": CAROL, "name": "Carol"})
            await control.post("message", {"chat": CAROL, "body": "Is the shop open today?"})
            await wait_event(page, "chat.new_message")
            await page.evaluate(f"WPP.chat.sendTextMessage('{CAROL}', 'Yes, until 18:00.')")
        finally:
            await context.close()
            await first.stop()
        assert state_file.is_file()

        second = Lookalike(config)
        assert await second.start(port=port) == base
        context = await launch(pw, profile)
        try:
            page = await open_bot(context, base)
            await page.wait_for_function("WPP.conn.isMainReady()")  # no QR, no scan
            assert await page.locator("#screen-main").is_visible()
            assert (await control.state())["login"] == "main_ready"
            kept = await page.evaluate(
                f"""async () => (await WPP.chat.getMessages('{CAROL}', {{count: -1}}))
                  .map(m => [m.id.fromMe, m.body, m.ack])"""
            )
            # The reply's delivery (ack 2) came while the look-alike was down.
            assert kept == [[False, "Is the shop open today?", 1], [True, "Yes, until 18:00.", 2]]
            assert await page.evaluate(f"WPP.chat.get('{CAROL}').name") == "Carol"
            state = await control.state()
            assert {"id": CAROL, "name": "Carol", "lid": None} in state["contacts"]
            assert [m["body"] for m in state["messages"] if m["chat"] == CAROL] == [
                "Is the shop open today?",
                "Yes, until 18:00.",
            ]
        finally:
            await context.close()
            await second.stop()

    fresh = Lookalike(LookalikeConfig(ack_delay_s=0.2))
    assert fresh.state()["session"] is False
    assert CAROL not in {c["id"] for c in fresh.state()["chats"]}


async def test_logout_restarts_qr_flow(browser: BrowserContext, control: Control) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    async with page.expect_event("load"):
        await control.post("logout")
    await page.wait_for_function("document.getElementById('qr-code').textContent.length > 0")
    assert await page.evaluate("WPP.conn.isAuthenticated()") is False
    assert await page.evaluate("localStorage.getItem('lookalike.session')") is None
    assert (await control.state())["login"] == "qr"
    await login(page, control)


async def test_conflict_then_use_here(browser: BrowserContext, control: Control) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    await control.post("conflict")
    await page.get_by_test_id("use-here").wait_for()
    assert ["CONFLICT"] in await events(page, "conn.stream_mode_changed")
    missed = await control.post("message", {"chat": ALICE, "body": "during the conflict"})
    assert missed["live"] is False
    await page.get_by_test_id("use-here").click()
    await control.wait_state(lambda s: s["login"] == "main_ready")
    assert await events(page, "chat.new_message") == []
    bodies = await page.evaluate(
        f"async () => (await WPP.chat.getMessages('{ALICE}')).map(m => m.body)"
    )
    assert bodies == ["during the conflict"]


async def test_own_ids_mode_ignores_message_id_and_echoes_first(
    browser: BrowserContext, control: Control
) -> None:
    """``keep_message_ids: false``: the page assigns its own id; the echo comes before the
    send returns."""
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    asked = f"true_{ALICE}_3EB0AAAABBBBCCCCDDDD"
    send = "([c, id]) => WPP.chat.sendTextMessage(c, 'Kept?', { messageId: id })"
    kept = await page.evaluate(send, [ALICE, asked])
    assert kept["id"] == asked
    assert (await control.post("config", {"keep_message_ids": False}))["keep_message_ids"] is False
    await page.wait_for_timeout(200)  # the page hears the switch through its event stream
    await page.evaluate(
        """() => { window.__order = [];
          WPP.on('chat.new_message', (m) => window.__order.push('echo:' + m.id.id)); }"""
    )
    result = await page.evaluate(
        """([c, id]) => WPP.chat.sendTextMessage(c, 'Own id?', { messageId: id })
             .then((r) => { window.__order.push('returned:' + r.id); return r; })""",
        [ALICE, f"true_{ALICE}_3EB0EEEEFFFF00001111"],
    )
    inner = result["id"].split("_")[2]
    assert result["id"].startswith(f"true_{ALICE}_3EB0") and inner != "3EB0EEEEFFFF00001111"
    order = await page.evaluate("window.__order")
    assert order == [f"echo:{inner}", f"returned:{result['id']}"]
    state = await control.state()
    assert any(m["id"] == inner and m["origin"] == "bot" for m in state["messages"])
    await control.post("config", {"keep_message_ids": True})


async def test_lids_edits_revokes_and_reactions_have_wa_js_shapes(
    browser: BrowserContext, control: Control
) -> None:
    page = await open_bot(browser, control.base_url)
    await login(page, control)
    state = await control.state()
    me_lid = state["me_lid"]
    alice_lid = next(c["lid"] for c in state["contacts"] if c["id"] == ALICE)
    assert await page.evaluate("WPP.conn.getMyUserLid()._serialized") == me_lid
    entry = await page.evaluate("id => WPP.contact.getPnLidEntry(id)", alice_lid)
    assert entry["lid"] == {
        "id": alice_lid.split("@")[0],
        "server": "lid",
        "_serialized": alice_lid,
    }
    assert entry["phoneNumber"]["_serialized"] == ALICE
    by_phone = await page.evaluate("id => WPP.contact.getPnLidEntry(id)", ALICE)
    assert by_phone["lid"]["_serialized"] == alice_lid
    contacts = await page.evaluate(
        "async () => (await WPP.contact.list())"
        ".map(c => [c.id._serialized, c.lid && c.lid._serialized])"
    )
    assert [ALICE, alice_lid] in contacts

    twice = await control.post(
        "message", {"chat": ALICE, "body": "Spelled twice", "twice_as_lid": True}
    )
    await page.wait_for_function(
        "id => window.__raw.filter(e => e.name === 'chat.new_message' "
        "&& e.args[0].id.id === id).length === 2",
        arg=twice["id"],
    )
    remotes = await page.evaluate(
        "id => window.__raw.filter(e => e.name === 'chat.new_message' && e.args[0].id.id === id)"
        ".map(e => e.args[0].id.remote._serialized)",
        twice["id"],
    )
    assert remotes == [ALICE, alice_lid]

    await control.post("edit", {"id": twice["id"], "body": "Spelled once"})
    await wait_event(page, "chat.msg_edited")
    edited = await page.evaluate(
        """() => { const e = window.__raw.filter(e => e.name === 'chat.msg_edited').pop().args[0];
          return { chat: e.chat._serialized, id: e.id, body: e.msg.body, key: e.msg.id.id,
                   t: e.msg.latestEditSenderTimestampMs, edit: e.msg.latestEditMsgKey.id }; }"""
    )
    assert edited["body"] == "Spelled once" and edited["key"] == twice["id"]
    assert edited["id"] == f"false_{ALICE}_{twice['id']}" and edited["t"] > 0

    await control.post("react", {"id": twice["id"], "reaction": "❤️"})
    await wait_event(page, "chat.new_reaction")
    reaction = (await events(page, "chat.new_reaction"))[-1][0]
    assert reaction["msgId"]["_serialized"] == f"false_{ALICE}_{twice['id']}"
    assert (reaction["reactionText"], reaction["sender"], reaction["id"]["fromMe"]) == (
        "❤️",
        ALICE,
        False,
    )
    await control.post("revoke", {"id": twice["id"]})
    await wait_event(page, "chat.msg_revoke")
    revoke = (await events(page, "chat.msg_revoke"))[-1][0]
    assert revoke["refId"]["id"] == twice["id"] and revoke["id"]["id"] != twice["id"]
    assert (revoke["type"], revoke["from"]) == ("sender_revoke", ALICE)
    state = await control.state()
    gone = next(m for m in state["messages"] if m["id"] == twice["id"])
    assert (gone["type"], gone["body"], gone["revoked"]) == ("revoked", "", True)
