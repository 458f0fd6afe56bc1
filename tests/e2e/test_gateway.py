"""The gateway end to end: look-alike page in real Chromium, Apache Kafka, pipeline worker.

One stack per id mode of the look-alike: the look-alike server (this process), a pipeline worker
and a gateway process (``faust -A pipeline.gateway worker``), each real. ``kept``: WhatsApp keeps
the message id the gateway asks for; ``own``: it assigns its own, and the echo of a send comes
before the send returns. The gateway never commits offsets here
(``WABOT_COMMIT_INTERVAL_S`` of an hour), so every gateway restart replays every reply it has
handled; that no reply ever shows up twice on the page is the sent table and the chat check at
work. Tests run in file order, all of them in one mode, then in the other: the QR login comes
first. Tests that do not depend on the id mode run in one mode only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from pipeline.dev.lookalike import LookalikeConfig
from pipeline.dev.lookalike.server import ThreadedLookalike, run_in_thread
from pipeline.gateway.messages import message_id_for
from pipeline.gateway.page import CHROMIUM_ARGS, browsers_on
from pipeline.testing.workers import WorkerProcess
from tests.conftest import REPO, Broker
from tests.conversation import Conversation

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ME = "10000@c.us"
ALICE = "4915111111111@c.us"
BOB = "4915222222222@c.us"
GROUP = "120363000000000001@g.us"
OUTPUT = REPO / "test-output"
CHROMIUM = "/usr/bin/chromium"


class Stack:
    """The running pieces, and ways to look at them."""

    def __init__(
        self, conv: Conversation, lookalike: ThreadedLookalike, tmp: Path, mode: str
    ) -> None:
        self.mode = mode
        self.conv = conv
        self.lookalike = lookalike
        self.profile = tmp / "profile"
        self.gateway_env = {
            **conv.env,
            "WABOT_GATEWAY_NAME": "e2e",
            "WABOT_GATEWAY_URL": lookalike.base_url + "/",
            "WABOT_GATEWAY_PROFILE_DIR": str(self.profile),
            "WABOT_SEND_TYPING_MS_PER_CHAR": "15",
            "WABOT_SEND_TYPING_MAX_S": "0.6",
            "WABOT_SEND_MIN_GAP_CHAT_S": "0.2",
            "WABOT_SEND_MIN_GAP_ACCOUNT_S": "0.1",
            "WABOT_GATEWAY_RESTART_BACKOFF_S": "0.5",
            "WABOT_GATEWAY_RESTART_BACKOFF_MAX_S": "2",
            "WABOT_COMMIT_INTERVAL_S": "3600",
        }
        self.tmp = tmp
        self.gateways: list[WorkerProcess] = []

    def close(self) -> None:
        """Stop the gateways, the worker, the stand-in and the look-alike, and kill the
        browsers left on this stack's profile (only those)."""
        for gateway in self.gateways:
            if gateway.proc is not None and gateway.proc.poll() is None:
                gateway.stop()
        self.conv.close()
        self.lookalike.stop()
        for pid in browsers_on(self.profile):
            os.kill(pid, signal.SIGKILL)

    @property
    def gateway(self) -> WorkerProcess:
        return self.gateways[-1]

    def start_gateway(self, **env: str) -> WorkerProcess:
        n = len(self.gateways) + 1
        log = self.tmp / f"gateway{n}.log"
        gateway = WorkerProcess(
            {**self.gateway_env, **env}, log, cwd=REPO, app="pipeline.gateway"
        ).start()
        self.gateways.append(gateway)
        gateway.wait_ready()
        return gateway

    def status(self) -> dict[str, Any]:
        return self.gateway.get_json("/gateway/status") or {}

    async def wait_state(self, state: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("state") == state:
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"gateway not {state} after {timeout}s: {status}\n{self.gateway.tail()}"
        )

    def post(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call to the look-alike's control API (a customer writes, the phone scans...)."""
        request = urllib.request.Request(
            f"{self.lookalike.base_url}/control/{route}",
            data=json.dumps(body or {}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def messages(self, chat: str) -> list[dict[str, Any]]:
        state = self.lookalike.state()
        return [m for m in state["messages"] if m["chat"] == chat]

    def bot_messages(self, chat: str) -> list[dict[str, Any]]:
        return [m for m in self.messages(chat) if m["origin"] == "bot"]

    async def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.gateway.tail()}")

    async def events(self, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        return await self.conv.collect("events", until, timeout=60)

    async def receipts(
        self, until: Callable[[list[dict[str, Any]]], bool], settle: float = 0.0
    ) -> list[dict[str, Any]]:
        return await self.conv.collect("delivery", until, timeout=60, settle=settle)


@pytest.fixture(scope="module", params=["kept", "own"], ids=["ids-kept", "own-ids"])
def stack(
    request: pytest.FixtureRequest, kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    mode = str(request.param)
    tmp = tmp_path_factory.mktemp(f"gateway-{mode}")
    lookalike = run_in_thread(LookalikeConfig(me=ME, keep_message_ids=mode == "kept"))
    conv = Conversation(kafka_broker, tmp)
    built = Stack(conv, lookalike, tmp, mode)
    try:
        conv.start_worker()
        built.start_gateway()
        yield built
    finally:
        built.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def phone_chat(chromium: Browser, stack: Stack, chat: str) -> Page:
    page = await chromium.new_page(viewport={"width": 1100, "height": 700})
    await page.goto(f"{stack.lookalike.base_url}/phone")
    await page.get_by_test_id("phone-customer").select_option(chat)
    return page


async def screenshot(page: Page, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / name))


def save_bot_page(stack: Stack, name: str) -> None:
    """The gateway's own page, through its screenshot view."""
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / name).write_bytes(stack.gateway.get("/gateway/screenshot.png"))


def only(stack: Stack, mode: str) -> None:
    """Run a test that does not depend on the id mode once."""
    if stack.mode != mode:
        pytest.skip(f"independent of the id mode: runs with {mode!r} ids only")


def states(events: list[dict[str, Any]]) -> list[str]:
    return [e["state"] for e in events if e["kind"] == "state"]


async def test_qr_flow_reaches_ready(stack: Stack) -> None:
    status = await stack.wait_state("qr")
    assert status["qr_available"] is True
    code = stack.lookalike.state()["auth_code"]["fullCode"]
    assert stack.gateway.get("/gateway/qr.png").startswith(b"\x89PNG\r\n\x1a\n")
    # The look-alike rotates its code (10 s, then every 20 s), as WhatsApp Web does: the
    # code shown now is on wa.events, whichever earlier ones are there before it.
    events = await stack.events(lambda es: any(e.get("qr") == code for e in es))
    qr_event = next(e for e in events if e.get("state") == "qr" and e.get("qr") == code)
    assert qr_event["account_id"] is None and qr_event["gateway"] == "e2e"
    # The terminal QR follows the state change in the log (a CI run read the log in between).
    await stack.wait_for(
        "the QR in the terminal", lambda: "█" in Path(stack.gateway.log).read_text()
    )
    save_bot_page(stack, "gateway-qr.png")

    stack.post("scan")
    status = await stack.wait_state("ready")
    assert status["account_id"] == ME
    events = await stack.events(lambda es: "ready" in states(es))
    seen = states(events)
    assert seen[0] == "starting"
    assert seen.index("qr") < seen.index("authenticated") < seen.index("ready")
    assert events[-1]["account_id"] == ME


async def test_customer_types_and_the_reply_appears(stack: Stack, chromium: Browser) -> None:
    phone = await phone_chat(chromium, stack, ALICE)
    await phone.get_by_test_id("phone-body").fill("Hi! Are you open on Sunday?")
    await phone.get_by_test_id("phone-send").click()
    reply = phone.locator("[data-testid=phone-msg][data-origin=bot]")
    await reply.first.wait_for(timeout=60_000)
    text = await reply.first.get_by_test_id("phone-msg-body").text_content()
    assert text is not None and "Are you open on Sunday?" in text  # the stand-in echoes
    # Delivered ticks follow the acks (1 sent, 2 delivered after the look-alike's delay).
    await phone.locator("[data-testid=phone-msg][data-origin=bot][data-ack='2']").wait_for()
    await phone.get_by_test_id("phone-body").fill("Great, see you then.")
    await phone.get_by_test_id("phone-send").click()
    await stack.wait_for("the second reply", lambda: len(stack.bot_messages(ALICE)) == 2)
    await phone.locator("[data-testid=phone-msg][data-origin=bot]").nth(1).wait_for()
    await screenshot(phone, "gateway-conversation.png")
    save_bot_page(stack, "gateway-bot-page.png")

    incoming = [m for m in stack.messages(ALICE) if m["origin"] == "customer"]
    assert all(m["read_by_page"] for m in incoming)  # marked read once on Kafka
    bot = stack.bot_messages(ALICE)
    receipts = await stack.receipts(
        lambda rs: sum(r["chat_id"] == ALICE and r["status"] == "delivered" for r in rs) >= 2
    )
    sent = [r for r in receipts if r["chat_id"] == ALICE and r["status"] == "sent"]
    assert [r["wa_message_id"] for r in sent] == [m["id"] for m in bot]
    for r in sent:  # the receipt names the id the message has, asked for or not
        kept = r["wa_message_id"] == message_id_for(ME, r["outbound_id"])
        assert kept is (stack.mode == "kept")
    # Our echoes were recognised as the bot's, not taken for the owner typing.
    inbound = await stack.conv.collect(
        "inbound", lambda rs: sum(r["chat_id"] == ALICE and r["from_me"] for r in rs) >= 2
    )
    echoes = [r for r in inbound if r["chat_id"] == ALICE and r["from_me"]]
    assert [r["message_id"] for r in echoes] == [m["id"] for m in bot]
    assert all(r["sent_by_bot"] for r in echoes), echoes
    delivered = {r["wa_message_id"] for r in receipts if r["status"] == "delivered"}
    assert {m["id"] for m in bot} <= delivered
    await phone.close()


async def test_owner_typing_pauses_the_bot(stack: Stack) -> None:
    stack.post("message", {"chat": BOB, "body": "Hello, do you repair bikes?"})
    await stack.wait_for("the reply to Bob", lambda: len(stack.bot_messages(BOB)) == 1)
    stack.post("owner", {"chat": BOB, "body": "Hi Bob, the owner here. I'll take it from here."})
    await asyncio.sleep(2)  # the owner's message reaches the guard first
    stack.post("message", {"chat": BOB, "body": "Great, what does a new chain cost?"})
    # A control chat proves the pipeline keeps answering meanwhile.
    stack.post("message", {"chat": ALICE, "body": "One more question about Sunday"})
    await stack.wait_for("the control reply", lambda: len(stack.bot_messages(ALICE)) == 3)
    await asyncio.sleep(3)
    assert len(stack.bot_messages(BOB)) == 1, stack.messages(BOB)


async def test_group_message_without_mention_gets_no_reply(stack: Stack) -> None:
    only(stack, "kept")
    before = len(stack.bot_messages(GROUP))
    stack.post("message", {"chat": GROUP, "author": ALICE, "body": "Who brings the cake?"})
    await asyncio.sleep(1)
    stack.post("message", {"chat": GROUP, "author": BOB, "body": "!bot what time is it?"})
    await stack.wait_for("the group reply", lambda: len(stack.bot_messages(GROUP)) == before + 1)
    await asyncio.sleep(3)
    replies = stack.bot_messages(GROUP)[before:]
    assert len(replies) == 1
    assert "what time is it?" in replies[0]["body"]
    assert "cake" not in replies[0]["body"]


async def test_inbound_records_carry_the_names_whatsapp_shows(stack: Stack) -> None:
    """Contact and group names, read from WA-JS's models on the page, reach wa.inbound."""
    only(stack, "kept")
    stranger = "4915333333333@c.us"  # a number the account has no name for
    stack.post("contact", {"id": stranger})
    stack.post("message", {"chat": stranger, "body": "Hello, who is this?"})
    records = await stack.conv.collect(
        "inbound",
        lambda rs: (
            any(r["chat_id"] == stranger for r in rs)
            and any(r["chat_id"] == GROUP and r["sender_id"] == BOB for r in rs)
        ),
    )

    def names(chat: str, **match: Any) -> set[tuple[str | None, str | None]]:
        return {
            (r["sender_name"], r["chat_name"])
            for r in records
            if r["chat_id"] == chat and all(r[k] == v for k, v in match.items())
        }

    assert names(ALICE, from_me=False) == {("Alice", "Alice")}
    assert names(ALICE, from_me=True) == {(None, "Alice")}  # the bot's echoes
    assert names(GROUP, sender_id=ALICE) == {("Alice", "Lookalike friends")}
    assert names(GROUP, sender_id=BOB) == {("Bob", "Lookalike friends")}
    assert names(stranger) == {(None, None)}


async def test_browser_killed_mid_conversation_delivers_each_reply_once(stack: Stack) -> None:
    chats = [f"49160000000{i:02d}@c.us" for i in range(6)]
    for chat in chats:
        stack.post("contact", {"id": chat})
    restarts = stack.status()["restarts"]
    for chat in chats:
        stack.post("message", {"chat": chat, "body": f"Order status for {chat[:13]}?"})
    await stack.wait_for(
        "the first reply", lambda: any(stack.bot_messages(c) for c in chats), timeout=60
    )
    pids = browsers_on(stack.profile)
    assert pids, "the gateway's Chromium was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    await stack.wait_for(
        "every reply after the restart",
        lambda: all(stack.bot_messages(c) for c in chats),
        timeout=90,
    )
    await asyncio.sleep(3)  # room for a duplicate to show up
    for chat in chats:
        assert len(stack.bot_messages(chat)) == 1, (chat, stack.messages(chat))
    status = await stack.wait_state("ready")
    assert status["restarts"] > restarts
    events = await stack.events(lambda es: "disconnected" in states(es))
    assert "disconnected" in states(events)


async def test_gateway_killed_between_send_and_commit_sends_once_and_catches_up(
    stack: Stack,
) -> None:
    chat = "4916000000099@c.us"
    stack.post("contact", {"id": chat})
    stack.post("message", {"chat": chat, "body": "Can I change my booking?"})
    await stack.wait_for("the reply", lambda: len(stack.bot_messages(chat)) == 1)
    wa_id = stack.bot_messages(chat)[0]["id"]
    stack.gateway.stop(signal.SIGKILL)  # nothing committed: every reply comes back
    before = await stack.receipts(lambda rs: True)
    handled = {r["outbound_id"] for r in before if r["status"] in ("sent", "duplicate_skipped")}
    # Written while no gateway runs: no live event ever comes for it, only the catch-up.
    offline = "4916000000098@c.us"
    stack.post("contact", {"id": offline})
    stack.post("message", {"chat": offline, "body": "Anyone there while you were away?"})

    stack.start_gateway()
    await stack.wait_state("ready")
    await stack.wait_for("the caught-up reply", lambda: len(stack.bot_messages(offline)) == 1)
    assert "while you were away" in stack.bot_messages(offline)[0]["body"]

    def count(receipts: list[dict[str, Any]], status: str) -> Counter[str]:
        return Counter(r["outbound_id"] for r in receipts if r["status"] == status)

    def replayed(receipts: list[dict[str, Any]]) -> set[str]:
        more = count(receipts, "duplicate_skipped") - count(before, "duplicate_skipped")
        return set(more)

    # The replies the first gateway handled come back (nothing was committed) and each is
    # recognised, none sent again. On a loaded machine a partition's first record is now and
    # then not read again after the restart (seen once in a full run: that reply stayed on
    # the page once); so the kill's own reply must come back, and every other reply is on
    # its chat's page exactly once either way.
    receipts = await stack.receipts(lambda rs: handled <= replayed(rs), settle=3)
    back = replayed(receipts)
    assert len(back) >= len(handled) - 1, sorted(handled - back)
    assert not (count(receipts, "sent") - count(before, "sent")) & Counter(handled)
    on_page = Counter(
        m["id"] for c in {r["chat_id"] for r in before} for m in stack.bot_messages(c)
    )
    assert all(n == 1 for n in on_page.values()), on_page
    # "sent" is missing when the kill came before the receipt was written.
    statuses = [r["status"] for r in receipts if r["wa_message_id"] == wa_id]
    assert statuses.count("sent") <= 1 and "duplicate_skipped" in statuses, statuses
    assert len(stack.bot_messages(chat)) == 1
    for earlier in (ALICE, BOB):  # replayed too, and still on the page once
        ids = [m["id"] for m in stack.bot_messages(earlier)]
        assert len(ids) == len(set(ids))

    # The customer reads the reply only now: the new gateway never sent it, yet it knows
    # (from the sink's table) which outbound id it was, and reports it read.
    outbound_id = next(r["outbound_id"] for r in receipts if r["wa_message_id"] == wa_id)
    assert wa_id in stack.post("read", {"chat": chat})["ids"]

    def read(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rs if r["status"] == "read" and r["wa_message_id"] == wa_id]

    receipts = await stack.receipts(lambda rs: bool(read(rs)))
    assert [r["outbound_id"] for r in read(receipts)] == [outbound_id]


async def test_gateway_without_its_sent_table_finds_every_reply_in_the_chats(
    stack: Stack,
) -> None:
    """The crash-safe check before a send, with nothing recorded: a gateway under a new name
    (new consumer group, empty sent table) reads every outbound record again; each reply is
    found in its chat (by the id asked for, or by its text when WhatsApp assigned its own)."""
    stack.gateway.stop()
    before = await stack.receipts(lambda rs: True)
    sent_before = Counter(r["outbound_id"] for r in before if r["status"] == "sent")
    pages_before = {c: len(stack.bot_messages(c)) for c in (ALICE, BOB)}
    stack.start_gateway(WABOT_GATEWAY_NAME="e2e-fresh")
    await stack.wait_state("ready")

    def skipped(rs: list[dict[str, Any]]) -> set[str]:
        more = Counter(r["outbound_id"] for r in rs if r["status"] == "duplicate_skipped")
        return set(
            more - Counter(r["outbound_id"] for r in before if r["status"] == "duplicate_skipped")
        )

    receipts = await stack.receipts(lambda rs: set(sent_before) <= skipped(rs), settle=3)
    assert set(sent_before) <= skipped(receipts), sorted(set(sent_before) - skipped(receipts))
    sent_after = Counter(r["outbound_id"] for r in receipts if r["status"] == "sent")
    assert not (sent_after - sent_before), sent_after - sent_before
    assert {c: len(stack.bot_messages(c)) for c in (ALICE, BOB)} == pages_before


def lids(stack: Stack) -> tuple[str, str]:
    """The bot's LID and Alice's, as the look-alike knows them."""
    state = stack.lookalike.state()
    alice_lid = next(c["lid"] for c in state["contacts"] if c["id"] == ALICE)
    return str(state["me_lid"]), str(alice_lid)


async def test_one_message_under_phone_and_lid_ids_gets_one_reply(stack: Stack) -> None:
    """Reproduced: the same message id under @c.us and @lid got two replies."""
    only(stack, "own")
    _, alice_lid = lids(stack)
    before = len(stack.bot_messages(ALICE))
    body = "Twice spelled, once answered?"
    stack.post("message", {"chat": ALICE, "body": body, "twice_as_lid": True})
    await stack.wait_for("the reply", lambda: len(stack.bot_messages(ALICE)) == before + 1)
    await asyncio.sleep(3)  # room for a second reply
    assert len(stack.bot_messages(ALICE)) == before + 1
    assert not stack.bot_messages(alice_lid)
    inbound = await stack.conv.collect(
        "inbound", lambda rs: sum(r["body"] == body for r in rs) >= 2
    )
    copies = [r for r in inbound if r["body"] == body]
    assert {(r["chat_id"], r["sender_id"], r["message_id"]) for r in copies} == {
        (ALICE, ALICE, copies[0]["message_id"])
    }


async def test_a_group_mention_of_the_bots_lid_gets_a_reply(stack: Stack) -> None:
    """Reproduced: a mention of the bot by its LID got no reply."""
    only(stack, "own")
    me_lid, alice_lid = lids(stack)
    before = len(stack.bot_messages(GROUP))
    body = f"@{me_lid.split('@')[0]} do you deliver?"
    stack.post("message", {"chat": GROUP, "author": alice_lid, "body": body, "mentions": [me_lid]})
    await stack.wait_for(
        "the reply to the LID mention", lambda: len(stack.bot_messages(GROUP)) == before + 1
    )
    inbound = await stack.conv.collect("inbound", lambda rs: any(r["body"] == body for r in rs))
    mention = next(r for r in inbound if r["body"] == body)
    assert mention["mentioned_ids"] == [ME] and mention["author_id"] == ALICE


async def test_a_group_reply_quoting_the_bot_gets_a_reply(stack: Stack) -> None:
    """A reply that quotes one of the bot's messages speaks to the bot."""
    only(stack, "own")
    before = len(stack.bot_messages(GROUP))
    stack.post("message", {"chat": GROUP, "author": ALICE, "body": "!bot are you open today?"})
    await stack.wait_for("the bot's answer", lambda: len(stack.bot_messages(GROUP)) == before + 1)
    bot_reply = stack.bot_messages(GROUP)[-1]
    stack.post(
        "message",
        {"chat": GROUP, "author": BOB, "body": "And on Sundays?", "quoted": bot_reply["id"]},
    )
    await stack.wait_for(
        "the reply to the quote", lambda: len(stack.bot_messages(GROUP)) == before + 2
    )
    assert "Sundays" in stack.bot_messages(GROUP)[-1]["body"]
    inbound = await stack.conv.collect(
        "inbound", lambda rs: any(r["body"] == "And on Sundays?" for r in rs)
    )
    quoting = next(r for r in inbound if r["body"] == "And on Sundays?")
    assert quoting["quoted_from_me"] and quoting["quoted_message_id"] == bot_reply["id"]


async def test_edits_deletes_and_reactions_reach_inbound(stack: Stack, chromium: Browser) -> None:
    """The phone edits, deletes for everyone and reacts; each is a record
    on wa.inbound with its event, the original message as target and an id of its own."""
    only(stack, "own")
    chat = "4916000000077@c.us"
    stack.post("contact", {"id": chat, "name": "Erin"})
    first = stack.post("message", {"chat": chat, "body": "Do you have size 42?"})
    second = stack.post("message", {"chat": chat, "body": "Sorry, wrong chat"})
    await stack.wait_for("a reply", lambda: bool(stack.bot_messages(chat)))
    reply = stack.bot_messages(chat)[0]
    phone = await phone_chat(chromium, stack, chat)
    phone.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("Do you have size 43?")))
    msg = phone.locator(f"[data-testid=phone-msg][data-id='{first['id']}']")
    await msg.get_by_test_id("phone-msg-edit").click()
    await msg.get_by_test_id("phone-msg-edited").wait_for()
    gone = phone.locator(f"[data-testid=phone-msg][data-id='{second['id']}']")
    await gone.get_by_test_id("phone-msg-delete").click()
    await phone.get_by_text("This message was deleted").wait_for()
    liked = phone.locator(f"[data-testid=phone-msg][data-id='{reply['id']}']")
    await liked.get_by_test_id("phone-msg-react").click()
    await liked.get_by_test_id("phone-msg-reactions").wait_for()
    await screenshot(phone, "gateway-edit-delete-react.png")
    await phone.close()

    def events(rs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {r["event"]: r for r in rs if r["chat_id"] == chat and r["event"] != "message"}

    inbound = await stack.conv.collect("inbound", lambda rs: len(events(rs)) == 3)
    found = events(inbound)
    assert set(found) == {"edit", "revoke", "reaction"}, found
    edit, revoke, reaction = found["edit"], found["revoke"], found["reaction"]
    assert (edit["target_message_id"], edit["body"], edit["subtype"]) == (
        first["id"],
        "Do you have size 43?",
        "message_edit",
    )
    assert (revoke["target_message_id"], revoke["type"]) == (second["id"], "protocol")
    assert (reaction["target_message_id"], reaction["reaction"]) == (reply["id"], "👍")
    assert reaction["sender_id"] == chat and not reaction["from_me"]
    ids = {r["message_id"] for r in found.values()} | {first["id"], second["id"], reply["id"]}
    assert len(ids) == 6  # every event has an id of its own


async def test_conflict_and_logout_recover(stack: Stack) -> None:
    only(stack, "kept")
    stack.post("conflict")
    await stack.events(lambda es: "conflict" in states(es))
    await stack.wait_state("ready")

    stack.post("logout", {"reason": "user_initiated"})
    await stack.wait_state("qr")
    stack.post("scan")
    await stack.wait_state("ready")
    stack.post("message", {"chat": ALICE, "body": "Still there after the logout?"})
    await stack.wait_for(
        "a reply after the new login",
        lambda: any("after the logout" in m["body"] for m in stack.bot_messages(ALICE)),
    )
    seen = states(await stack.events(lambda es: "logged_out" in states(es)))
    assert seen.index("conflict") < seen.index("logged_out")
