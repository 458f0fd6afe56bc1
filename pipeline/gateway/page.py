"""The browser and the WhatsApp Web page, driven through WA-JS's public API (no DOM scraping).

Version note: written against ``@wppconnect/wa-js`` 4.6.0 (pinned in ``pipeline/wajs``) and the
WhatsApp Web builds it supports. This module and ``bridge.js`` are the only places that know
WhatsApp Web's objects; ``faust -A pipeline gateway-doctor`` checks a live WhatsApp Web for the
functions used here. Verified against the project's look-alike page only (no network here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.wajs import WajsError, ensure_bundle

log = logging.getLogger(__name__)

BRIDGE_JS = (Path(__file__).resolve().parent / "bridge.js").read_text()

#: Chromium flags for servers: no sandbox (containers), no GPU, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: A desktop Chrome user agent: WhatsApp Web refuses browsers it does not know.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)

EventHandler = Callable[[str, Any], None]


class PageGoneError(Exception):
    """The page or the browser went away during a call; retry once the gateway is ready."""


class WhatsAppRefusedError(Exception):
    """WA-JS raised (a bad chat id, a send WhatsApp refused); the message is WA-JS's."""


DRIVER_SESSION = Path(__file__).with_name("driver_session.sh")


def own_session_driver() -> None:
    """Start Playwright's driver (and so Chromium) in a session of its own from now on.

    A terminal's Ctrl-C is SIGINT to the whole foreground process group: the driver died with
    the worker's first signal, so the gateway saw its page close ("restarting the browser")
    and Playwright's pending calls failed with "Connection closed while reading from the
    driver" while the worker was still stopping in order. The worker stops the browser
    itself; a worker killed outright closes the driver's stdin, and the driver then closes
    Chromium. Uses ``PLAYWRIGHT_NODEJS_PATH`` (Playwright's setting for the Node.js it runs)
    and leaves one set by the user alone; POSIX only."""
    if os.environ.get("PLAYWRIGHT_NODEJS_PATH") or not os.access(DRIVER_SESSION, os.X_OK):
        return
    from playwright._impl._driver import compute_driver_executable

    node, _ = compute_driver_executable()
    os.environ["WABOT_DRIVER_NODE"] = node
    os.environ["WABOT_DRIVER_PYTHON"] = sys.executable
    os.environ["PLAYWRIGHT_NODEJS_PATH"] = str(DRIVER_SESSION)


async def launch_browser(
    playwright: Playwright, profile_dir: Path, *, executable: str, headless: bool
) -> BrowserContext:
    """Chromium with a persistent profile, so the WhatsApp login survives restarts."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    await stop_stale_browsers(profile_dir)
    return await playwright.chromium.launch_persistent_context(
        user_data_dir=str(profile_dir),
        executable_path=executable or None,
        headless=headless,
        args=CHROMIUM_ARGS,
        user_agent=USER_AGENT,
        viewport={"width": 1280, "height": 860},
        # The worker closes the browser when it stops, not the driver on a signal.
        handle_sigint=False,
        handle_sigterm=False,
        handle_sighup=False,
    )


def browsers_on(profile_dir: Path) -> list[int]:
    """PIDs of main Chromium processes using ``profile_dir`` (renderers carry ``--type=``)."""
    flag = f"--user-data-dir={profile_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if flag in args and not any(a.startswith(b"--type=") for a in args):
            pids.append(int(entry.name))
    return pids


async def stop_stale_browsers(profile_dir: Path, timeout_s: float = 10.0) -> None:
    """End a browser a killed gateway left on this profile: Chromium allows one per profile.

    The profile belongs to this gateway, so any browser on it was started by a previous run
    of the gateway (whose process died before its browser did).
    """
    stale = browsers_on(profile_dir)
    for pid in stale:
        log.warning("gateway: ending browser pid %d left on %s by an earlier run", pid, profile_dir)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while stale and browsers_on(profile_dir) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)


class WhatsAppPage:
    """One open WhatsApp Web page with the bridge installed."""

    def __init__(self, page: Page) -> None:
        self.page = page

    @classmethod
    async def open(
        cls, context: BrowserContext, url: str, on_event: EventHandler, timeout_s: float
    ) -> WhatsAppPage:
        """Install the bridge on ``context``, open ``url`` and make sure WPP is there."""

        def binding(_source: Any, kind: str, data: Any = None) -> None:
            on_event(kind, data)  # synchronous: keeps the page's event order

        await context.expose_binding("__wabotEvent", binding)
        await context.add_init_script(BRIDGE_JS)
        page = context.pages[0] if context.pages else await context.new_page()
        self = cls(page)
        # WA-JS must be injected again after every reload of WhatsApp Web.
        page.on("domcontentloaded", lambda _: asyncio.ensure_future(self._inject_quietly()))
        await page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        await self.inject_wajs()
        return self

    async def inject_wajs(self) -> Path | None:
        """Add the pinned WA-JS bundle unless the page already has ``window.WPP``.

        Returns the bundle injected, or None when WPP was there (the look-alike). Raises
        :class:`~pipeline.wajs.WajsError` when the bundle is missing and npm cannot fetch it.
        """
        if await self.page.evaluate("typeof window.WPP !== 'undefined'"):
            return None
        bundle = await asyncio.to_thread(ensure_bundle)
        await self.page.add_script_tag(path=str(bundle))
        log.info("WA-JS injected from %s", bundle)
        return bundle

    async def _inject_quietly(self) -> None:
        with contextlib.suppress(PlaywrightError, WajsError):
            await self.inject_wajs()

    async def call(self, expression: str, *args: Any) -> Any:
        """Evaluate ``expression`` (a function of ``args``) in the page, mapping errors."""
        if self.page.is_closed():
            raise PageGoneError("the page is closed")
        try:
            return await self.page.evaluate(expression, list(args))
        except PlaywrightError as exc:
            if self.page.is_closed() or _is_gone(exc):
                raise PageGoneError(str(exc).splitlines()[0]) from exc
            raise WhatsAppRefusedError(str(exc).splitlines()[0]) from exc

    async def state(self) -> dict[str, Any]:
        result = await self.call("() => window.__wabot ? window.__wabot.state() : null")
        return dict(result) if isinstance(result, dict) else {"attached": False}

    async def auth_code(self) -> str | None:
        code = await self.call("() => window.__wabot.authCode()")
        return str(code) if code else None

    async def send(self, chat: str, text: str, message_id: str, typing_ms: int) -> dict[str, Any]:
        """``WPP.chat.sendTextMessage`` asking for ``message_id`` (an inner id) and waiting for
        the server's ack; returns ``{id, ack, result}`` where ``id`` is the serialized key WA-JS
        resolved with (WhatsApp Web may have assigned its own id) and ``result`` its
        ``messageSendResult``. Raises :class:`WhatsAppRefusedError` or :class:`PageGoneError`."""
        result = await self.call(
            "([chat, text, id, delay]) => window.__wabot.send(chat, text, id, delay)",
            chat,
            text,
            message_id,
            typing_ms,
        )
        return dict(result)

    async def recent_own(self, chat: str, count: int = 50) -> list[dict[str, Any]]:
        """Our own messages among the chat's last ``count`` (``WPP.chat.getMessages``), as
        ``[{id, body, t}]`` (inner id, text, seconds); empty when the chat does not exist."""
        found = await self.call(
            "([chat, count]) => window.__wabot.recentOwn(chat, count)", chat, count
        )
        return [dict(m) for m in found or []]

    async def lid_entries(self, ids: list[str]) -> list[tuple[str, str]]:
        """``(lid, phone id)`` pairs WA-JS knows for ``ids`` (``WPP.contact.getPnLidEntry``)."""
        found = await self.call("([ids]) => window.__wabot.lidEntries(ids)", ids)
        return _pairs(found)

    async def contact_lids(self, limit: int = 5000) -> list[tuple[str, str]]:
        """``(lid, phone id)`` pairs of the contact list (``WPP.contact.list``)."""
        found = await self.call("([n]) => window.__wabot.contactLids(n)", limit)
        return _pairs(found)

    async def unread(self, per_chat: int) -> list[dict[str, Any]]:
        if per_chat <= 0:
            return []
        found = await self.call("([n]) => window.__wabot.unread(n)", per_chat)
        return [dict(m) for m in found or []]

    async def mark_read(self, chat: str) -> None:
        await self.call("([chat]) => window.__wabot.markRead(chat)", chat)

    async def screenshot(self) -> bytes:
        """What the page shows now (PNG), for operators chasing a login or a stuck page."""
        try:
            return await self.page.screenshot()
        except PlaywrightError as exc:
            raise PageGoneError(str(exc).splitlines()[0]) from exc


def _pairs(found: Any) -> list[tuple[str, str]]:
    pairs = []
    for entry in found or []:
        if isinstance(entry, dict) and entry.get("lid") and entry.get("phoneNumber"):
            pairs.append((str(entry["lid"]), str(entry["phoneNumber"])))
    return pairs


def _is_gone(exc: PlaywrightError) -> bool:
    text = str(exc)
    return any(
        marker in text
        for marker in (
            "Target page, context or browser has been closed",
            "Target closed",
            "Execution context was destroyed",
            "Browser has been closed",
            "Page crashed",
            "browser has disconnected",
        )
    )
