"""The replay compare report in real Chromium: offline, escaped, two columns; the docs' screenshot.

The page is opened from a file:// URL with every other request aborted and recorded: the report
must need nothing but itself. The screenshot of the demo run goes to ``docs/replay-report.png``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Route, async_playwright

from pipeline.gateway.page import CHROMIUM_ARGS
from pipeline.replay.report.run_folder import write_report
from tests.unit.test_replay_report import (
    ARABIC,
    INJECTION,
    ORIGINAL_MODEL,
    REPLAYED_MODEL,
    demo_run,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "replay-report.png"
PRICES = {ORIGINAL_MODEL: (0.15, 0.60), REPLAYED_MODEL: (0.10, 0.30)}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


async def open_offline(browser: Browser, report: Path) -> tuple[Page, list[str]]:
    """The report in a fresh page; any request but the report itself is aborted and listed."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=True
    )
    context.set_default_timeout(8000)
    requested: list[str] = []
    own = report.as_uri()

    async def guard(route: Route) -> None:
        if route.request.url == own:
            await route.continue_()
        else:
            requested.append(route.request.url)
            await route.abort()

    await context.route("**/*", guard)
    page = await context.new_page()
    page.on("request", lambda r: None if r.url == own else requested.append(r.url))
    await page.goto(own, wait_until="load")
    return page, requested


async def test_report_reads_offline_with_both_replies_side_by_side(
    chromium: Browser, tmp_path: Path
) -> None:
    _, report = write_report(demo_run(tmp_path / "run"), PRICES)
    page, requested = await open_offline(chromium, report)
    await page.wait_for_load_state("networkidle")
    try:
        text = await page.inner_text("body")
        # Totals at the top (numbers worked out in tests/unit/test_replay_report.py).
        cards = {
            await c.get_attribute("data-total"): await c.inner_text()
            for c in await page.locator(".card").all()
        }
        assert "8" in cards["turns"]
        assert "4" in cards["changed replies"] and "of 7 compared" in cards["changed replies"]
        assert "0 / 1" in cards["missing sides"]
        assert "0 → 1" in cards["fallbacks"]
        assert "800 ms → 500 ms" in cards["latency p50"]
        assert "1,400 ms → 2,000 ms" in cards["latency p95"]
        for fact in ("1,274", "908", "2026-11-29T00:00Z .. 2026-11-30T00:00Z, 5 chats"):
            assert fact in text
        assert "rate_limited_chat: 1" in text and "llm_model=qwen2.5-7b-instruct" in text

        # The injected markup is visible as text and never ran.
        bob = page.locator("article", has_text="order #1042 delayed")
        assert INJECTION in await bob.locator(".customer-text").inner_text()
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("main script, main img").count() == 0
        assert ARABIC in text

        # Both replies of a changed turn on one row: original on the left, replayed right.
        changed = page.locator("article.changed").first
        original = changed.locator('td[data-side="original"]')
        replayed = changed.locator('td[data-side="replayed"]')
        left, right = await original.bounding_box(), await replayed.bounding_box()
        assert left is not None and right is not None
        assert abs(left["y"] - right["y"]) < 1
        assert left["x"] + left["width"] <= right["x"] + 1
        assert right["width"] > 400 and abs(left["width"] - right["width"]) < 2
        assert "€4.90; orders over €50" in await original.inner_text()
        assert "€4.90, and free for orders" in await replayed.inner_text()
        assert await changed.locator("ins").count() > 0
        assert await changed.locator("del").count() > 0

        # The missing side is shown as missing.
        missing = page.locator("article", has_text="Hello??")
        assert "no replayed result" in await missing.inner_text()

        # "show only changed" hides the unchanged turns, without a script.
        assert await page.locator("article.turn:visible").count() == 8
        await page.click("label[for=only-changed]")
        assert await page.locator("article.turn:visible").count() == 4
        await page.click("label[for=only-changed]")

        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert requested == []
    finally:
        await page.context.close()


async def test_report_needs_no_script(chromium: Browser, tmp_path: Path) -> None:
    _, report = write_report(demo_run(tmp_path / "run"))
    context = await chromium.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(report.as_uri())
        text = await page.inner_text("body")
        assert "changed replies" in text and "Hi Dave! How can I help you?" in text
        assert "no price table" in text
    finally:
        await context.close()
