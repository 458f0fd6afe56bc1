"""The operator dashboard (``/dashboard`` of the API) in real Chromium, against a real worker
and the real API on Apache Kafka with the SQLite store (the worker's archive fills it).

An operator loads the page, is refused with a wrong token, logs in, sees a new conversation
appear after its message is produced and finds it with the search box; opens it (the message
and the bot's reply), pauses the bot (the next message gets no reply on wa.outbound) and sends
a message by hand (a ``manual`` record on wa.outbound). The page must load nothing but the
API's own files and break no Content-Security-Policy rule. Chats show the names WhatsApp gave
(the name first, the id smaller beside it; the id alone when none is known), a group its
subject and who wrote; times read 24-hour HH:MM. The screenshot after that traffic goes to
``docs/dashboard.png`` (the docs' "Dashboard" page).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from pipeline.api.dashboard import bundle_missing
from pipeline.gateway.page import CHROMIUM_ARGS
from schemas import DeliveryReceipt, GatewayEvent
from tests.conftest import Broker
from tests.conversation import Conversation, inbound
from tests.integration.test_api_bot import count, logged, settings_of
from tests.integration.test_api_store import TOKEN, ApiServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(bundle_missing() is not None, reason="uPlot not fetched: make dashboard"),
]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
CHAT = "491630000001@c.us"
OTHERS = {
    "491630000002@c.us": ["Hi! Do you deliver on Sundays?", "And to Potsdam?"],
    "491630000003@c.us": ["What time do you open tomorrow?"],
    "491630000004@c.us": ["Can I pay by card?", "Thanks 🙏"],
}
#: The names WhatsApp Web gave the senders (491630000003 has none: only the number shows).
NAMES = {
    CHAT: "Maria Schmidt",
    "491630000002@c.us": "Jonas Weber",
    "491630000004@c.us": "Lea",
}
GROUP = "120363000000000042@g.us"
TOM = "491630000007@c.us"
SECONDS = 1000  # Playwright timeouts are in ms


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


async def produce_event(conv: Conversation, event: GatewayEvent) -> None:
    producer = await conv.producer()
    await producer.send_and_wait(
        conv.topics["events"], key=event.gateway.encode(), value=event.model_dump_json().encode()
    )


async def gateway_receipts(conv: Conversation, records: list[dict[str, Any]]) -> None:
    """What a gateway would report for these outbound records: sent 0.6 s after they were
    made (the reply latency on the page), then delivered."""
    producer = await conv.producer()
    for record in records:
        made = datetime.fromisoformat(record["created_at"])
        for status, after in (("sent", 0.6), ("delivered", 1.5)):
            receipt = DeliveryReceipt(
                outbound_id=record["outbound_id"],
                chat_id=record["chat_id"],
                account_id=record["account_id"],
                status=status,  # type: ignore[arg-type]
                wa_message_id=f"true_{record['outbound_id']}",
                at=made + timedelta(seconds=after),
            )
            await producer.send_and_wait(
                conv.topics["delivery"],
                key=record["chat_id"].encode(),
                value=receipt.model_dump_json().encode(),
            )


async def replies(conv: Conversation, chat: str, n: int, settle: float = 0.0) -> list[str]:
    records = await conv.collect(
        "outbound",
        lambda r: sum(x["chat_id"] == chat and x["kind"] == "reply" for x in r) >= n,
        timeout=45,
        settle=settle,
    )
    return [x["text"] for x in records if x["chat_id"] == chat and x["kind"] == "reply"]


def watch(page: Page, base: str) -> tuple[list[str], list[str]]:
    """Requests to anywhere but the API, and console errors other than the refused tokens."""
    elsewhere: list[str] = []
    errors: list[str] = []
    own = (base, f"blob:{base}/")  # the QR is shown from a blob: URL of the page itself
    page.on("request", lambda r: None if r.url.startswith(own) else elsewhere.append(r.url))

    def console(message: Any) -> None:
        text = message.text
        if message.type == "error" and "status of 403" not in text and "status of 401" not in text:
            errors.append(text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status == 404 else None,
    )
    return elsewhere, errors


async def test_operator_logs_in_follows_a_chat_pauses_the_bot_and_writes(
    kafka_broker: Broker, chromium: Browser, tmp_path: Path
) -> None:
    # A low chat limit, so one busy chat shows limit drops on the dashboard.
    conv = Conversation(kafka_broker, tmp_path, WABOT_RATE_CHAT_PER_MINUTE="2")
    try:
        worker = conv.start_worker()
        with ApiServer(settings_of(conv)) as api:
            context = await chromium.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(20 * SECONDS)
            page = await context.new_page()
            elsewhere, errors = watch(page, api.base)

            # The page: the login form first; a wrong token is refused with the API's reason.
            response = await page.goto(f"{api.base}/dashboard")
            assert response is not None and response.status == 200
            assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
            await expect(page.locator("#login-form")).to_be_visible()
            await expect(page.locator("#dash")).to_be_hidden()
            await page.fill("#token", "not-the-token")
            await page.click("#login-button")
            await expect(page.locator("#login-error")).to_have_text("the token is not valid")
            await expect(page.locator("#dash")).to_be_hidden()

            await page.fill("#token", TOKEN)
            await page.click("#login-button")
            await expect(page.locator("#dash")).to_be_visible()
            await expect(page.locator("#login")).to_be_hidden()
            # The token stays in the browser: a reload opens the dashboard, not the form.
            await page.reload()
            await expect(page.locator("#dash")).to_be_visible()

            # Traffic: other chats, a busy one over its limit, a record the guard cannot
            # read (a dead letter), and a gateway that waits for a QR scan.
            await conv.send(
                *(
                    inbound(c, t, sender_name=NAMES.get(c))
                    for c, texts in OTHERS.items()
                    for t in texts
                )
            )
            await conv.send(
                inbound(
                    GROUP,
                    "Anyone up for a run on Sunday?",
                    sender_id=TOM,
                    author_id=TOM,
                    sender_name="Tom",
                    chat_name="Sunday runners",
                )
            )
            await conv.send(*(inbound("491630000005@c.us", f"ping {i}") for i in range(5)))
            await conv.send_raw(b"491630000009@c.us", b"{not json")
            await produce_event(
                conv, GatewayEvent(gateway="main", kind="state", state="qr", qr="2@DEMO-QR,1")
            )

            # A new chat's message: the chat appears in the list, and the search finds it.
            await conv.send(
                inbound(CHAT, "Hello, is my order 4711 on its way?", sender_name=NAMES[CHAT])
            )
            row = page.locator(f'#chats li[data-chat-id="{CHAT}"]')
            await expect(row).to_be_visible()
            # Names first, the id smaller beside them; a chat without a name shows its id.
            await expect(row.locator(".who .name")).to_have_text("Maria Schmidt")
            await expect(row.locator(".who .id")).to_have_text("+491630000001")
            unnamed = page.locator('#chats li[data-chat-id="491630000003@c.us"]')
            await expect(unnamed.locator(".who .name")).to_have_text("+491630000003")
            await expect(unnamed.locator(".who .id")).to_have_count(0)
            group = page.locator(f'#chats li[data-chat-id="{GROUP}"]')
            await expect(group.locator(".who .name")).to_have_text("Sunday runners")
            await expect(group.locator(".who .id")).to_have_text(GROUP)
            for other in OTHERS:
                await expect(page.locator(f'#chats li[data-chat-id="{other}"]')).to_be_visible()
            await page.fill("#search", "4711")
            await expect(page.locator("#chats li")).to_have_count(1)
            await expect(row).to_be_visible()
            await page.fill("#search", "no such words anywhere")
            await expect(page.locator("#chats li")).to_have_count(0)
            await expect(page.locator("#chats-empty")).to_be_visible()
            await page.fill("#search", "")
            await expect(page.locator("#chats li")).to_have_count(len(OTHERS) + 3)

            # The gateway's state and its QR (an authorized fetch shown as an image).
            await expect(page.locator("#gateway-pill")).to_have_text("gateway qr")
            await expect(page.locator("#qr-box")).to_be_visible()
            assert await page.locator("#qr").evaluate("img => img.naturalWidth > 0") is True

            # The conversation: the message and the bot's reply.
            await row.locator("button").click()
            await expect(page.locator("#chat-view")).to_be_visible()
            messages = page.locator("#messages")
            await expect(messages.locator("li.in .text")).to_have_text(
                ["Hello, is my order 4711 on its way?"]
            )
            await expect(page.locator("#chat-title")).to_have_text("Maria Schmidt")
            await expect(page.locator("#chat-sub")).to_have_text(f"+491630000001 · {CHAT}")
            # A time as on the phone: 24-hour HH:MM (today's, so no date before it).
            await expect(messages.locator("li.in .meta")).to_have_text([re.compile(r"^\d\d:\d\d$")])
            await expect(page.locator("#updated")).to_have_text(
                re.compile(r"^updated \d\d:\d\d:\d\d$")
            )
            assert len(await replies(conv, CHAT, 1)) == 1
            await expect(messages.locator('li[data-kind="reply"] .text')).to_have_count(1)
            await expect(messages.locator('li[data-kind="reply"] .text')).to_contain_text(
                "Hello, is my order 4711 on its way?"
            )
            await expect(page.locator("#chat-state")).to_have_attribute("data-state", "active")

            # A group: its subject as the title, who wrote above each message.
            await page.goto(f"{api.base}/dashboard#chat={GROUP}")
            await expect(page.locator("#chat-title")).to_have_text("Sunday runners")
            await expect(messages.locator("li.in .from .name")).to_have_text(["Tom"])
            await expect(messages.locator("li.in .from .id")).to_have_text(["+491630000007"])
            await page.goto(f"{api.base}/dashboard#chat={CHAT}")
            await expect(page.locator("#chat-title")).to_have_text("Maria Schmidt")

            # Paused: the page says so, and the bot does not answer the next message.
            await page.click("#pause")
            await expect(page.locator("#chat-state")).to_have_attribute("data-state", "paused")
            await expect(page.locator("#chat-state")).to_contain_text("Paused until")
            logged(worker, lambda t: count(t, "control", CHAT, "paused until") == 1)
            quiet = inbound(CHAT, "Hello? Anyone there?")
            await conv.send(quiet)
            decided = await conv.collect(
                "decisions", lambda r: any(d["message_id"] == quiet.message_id for d in r)
            )
            assert [d["reason"] for d in decided if d["message_id"] == quiet.message_id] == [
                "paused"
            ]
            assert len(await replies(conv, CHAT, 1, settle=3.0)) == 1
            await expect(messages.locator("li.in .text")).to_have_count(2)
            await expect(messages.locator('li[data-kind="reply"]')).to_have_count(1)
            # Still paused after the next polls (from the store, not just the click).
            await page.wait_for_timeout(2500)
            await expect(page.locator("#chat-state")).to_have_attribute("data-state", "paused")

            # A message by hand: a manual record on wa.outbound, then in the history.
            text = "Hi, this is Anna from the shop: your order ships today."
            await page.fill("#send-text", text)
            await page.click("#send")
            await expect(page.locator("#chat-note")).to_have_text("Sent.")
            await expect(page.locator("#send-text")).to_have_value("")
            records = await conv.collect(
                "outbound", lambda r: any(x["kind"] == "manual" and x["text"] == text for x in r)
            )
            manual = [x for x in records if x["kind"] == "manual"]
            assert [(m["chat_id"], m["text"]) for m in manual] == [(CHAT, text)]
            await expect(messages.locator('li[data-kind="manual"] .text')).to_have_text([text])

            # The numbers and charts, after that traffic (and the receipts a gateway sends).
            await gateway_receipts(conv, records)
            await expect(messages.locator('li[data-kind="manual"] .meta')).to_contain_text(
                "delivered"
            )
            await expect(page.locator("#chart-messages .uplot")).to_have_count(1)
            await expect(page.locator("#chart-tokens .uplot")).to_have_count(1)
            await expect(page.locator("#dlq-count")).not_to_have_text("—")
            await expect(page.locator("#dlq-list li")).not_to_have_text(
                ["none seen since the API started"]
            )
            await expect(page.locator("#drops-total")).not_to_have_text("0")
            await expect(page.locator("#latency")).not_to_have_text("— / —")
            assert int(await page.locator("#in-hour").text_content() or "0") >= 10
            await page.wait_for_timeout(2200)  # one more poll: every chart on the latest numbers
            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT))

            # The gateway logs in: the QR goes away.
            await produce_event(conv, GatewayEvent(gateway="main", kind="state", state="ready"))
            await expect(page.locator("#gateway-pill")).to_have_text("gateway ready")
            await expect(page.locator("#qr-box")).to_be_hidden()

            # A token that stops working brings the form back with the API's reason.
            await page.evaluate("localStorage.setItem('wabot.dashboard.token', 'revoked')")
            await page.reload()
            await expect(page.locator("#login-error")).to_have_text("the token is not valid")
            await expect(page.locator("#dash")).to_be_hidden()

            assert elsewhere == [], elsewhere
            assert errors == [], errors
            await context.close()
    finally:
        await conv.stop_clients()
        conv.close()
