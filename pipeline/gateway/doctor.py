"""``faust -A pipeline gateway-doctor``: does WA-JS still work on this WhatsApp Web?

Opens the page (WhatsApp Web, or the look-alike) in a headless Chromium with a fresh
profile, injects the pinned WA-JS bundle when the page has no ``window.WPP`` yet, waits for
WA-JS to find WhatsApp's modules, and reports the versions and whether every function the
gateway calls is there. Exit codes: 0 all present, 1 something missing (or WA-JS never got
ready), 2 the check could not run (no Chromium, page not loadable, no bundle).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from pipeline.gateway.page import CHROMIUM_ARGS, WhatsAppPage
from pipeline.wajs import WajsError

DEFAULT_URL = "https://web.whatsapp.com/"
CHROMIUM = "/usr/bin/chromium"

GATEWAY_FUNCTIONS: tuple[str, ...] = (
    "WPP.on",
    "WPP.conn.isAuthenticated",
    "WPP.conn.isMainReady",
    "WPP.conn.getMyUserId",
    "WPP.conn.getAuthCode",
    "WPP.chat.sendTextMessage",
    "WPP.chat.getMessages",
    "WPP.chat.list",
    "WPP.chat.markIsRead",
    "WPP.conn.getMyUserLid",
    "WPP.contact.getPnLidEntry",
    "WPP.contact.list",
    "WPP.chat.get",
    "WPP.contact.queryWidExists",
    "WPP.conn.isOnline",
)
"""Every ``window.WPP`` function the gateway calls."""

OK, MISSING, FAILED = 0, 1, 2

_PROBE = """
(paths) => {
  const lookup = (path) =>
    path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), window);
  const text = (fn) => {
    try { const v = fn(); return v == null ? null : String(v); } catch (e) { return null; }
  };
  const flag = (fn) => { try { return fn() === true; } catch (e) { return false; } };
  const wpp = window.WPP;
  return {
    wajsVersion: text(() => wpp.version),
    waVersion:
      text(() => wpp.conn.getBuildConstants()?.VERSION_STR) ?? text(() => window.Debug?.VERSION),
    supported: text(() => wpp.supportedWhatsappWeb),
    isInjected: flag(() => wpp.isInjected),
    isReady: flag(() => wpp.isReady),
    functions: Object.fromEntries(paths.map((p) => {
      try { return [p, typeof lookup(p) === 'function']; } catch (e) { return [p, false]; }
    })),
  };
}
"""


@dataclass
class DoctorReport:
    """What the doctor found: lines to print and the exit code."""

    lines: list[str] = field(default_factory=list)
    exit_code: int = OK

    def add(self, line: str) -> None:
        self.lines.append(line)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=)?\s*(\S+)$")

_Key = tuple[int, int, int, tuple[tuple[int, int | str], ...] | None]


def _semver_key(version: str) -> _Key | None:
    match = _SEMVER.match(version.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    pre_key = None
    if pre is not None:
        pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), pre_key


def _compare(a: _Key, b: _Key) -> int:
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    pa, pb = a[3], b[3]
    if pa == pb:
        return 0
    if pa is None:  # a release is newer than its prereleases
        return 1
    if pb is None:
        return -1
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            return -1 if x < y else 1
    return -1 if len(pa) < len(pb) else 1


def version_in_range(version: str, spec: str) -> bool | None:
    """Whether ``version`` satisfies a semver range such as ``>=2.3000.1038792969-alpha``.

    Handles comparators (``>= > <= < =``) joined by spaces and alternatives joined by
    ``||``; returns None for anything else (the caller then says "unknown").
    """
    key = _semver_key(version)
    if key is None:
        return None
    for alternative in spec.split("||"):
        tokens = re.findall(r"(?:>=|<=|>|<|=)?\s*[^\s<>=]+", alternative.strip())
        if not tokens:
            return None
        satisfied = True
        for token in tokens:
            match = _COMPARATOR.match(token.strip())
            bound = _semver_key(match.group(2)) if match else None
            if match is None or bound is None:
                return None
            cmp = _compare(key, bound)
            op = match.group(1) or "="
            ok = {">=": cmp >= 0, "<=": cmp <= 0, ">": cmp > 0, "<": cmp < 0, "=": cmp == 0}[op]
            satisfied = satisfied and ok
        if satisfied:
            return True
    return False


async def _probe(page: Page) -> dict[str, Any]:
    result = await page.evaluate(_PROBE, list(GATEWAY_FUNCTIONS))
    return dict(result)


async def diagnose(
    url: str = DEFAULT_URL,
    timeout: float = 60.0,
    chromium: str = CHROMIUM,
    args: Sequence[str] = CHROMIUM_ARGS,
) -> DoctorReport:
    """Opens ``url``, injects WA-JS if needed and checks what the gateway needs."""
    report = DoctorReport()
    if not Path(chromium).is_file():
        report.add(f"error: Chromium not found at {chromium} (install Debian's chromium package)")
        report.exit_code = FAILED
        return report
    deadline = time.monotonic() + timeout
    ms = max(timeout, 1.0) * 1000
    with tempfile.TemporaryDirectory(prefix="wabot-doctor-") as profile:
        async with async_playwright() as pw:
            try:
                context = await pw.chromium.launch_persistent_context(
                    user_data_dir=profile,
                    executable_path=chromium,
                    args=list(args),
                    headless=True,
                    bypass_csp=True,  # WhatsApp's CSP would block the injected bundle
                )
            except PlaywrightError as exc:
                report.add(f"error: cannot start Chromium ({chromium}): {_one_line(exc)}")
                report.exit_code = FAILED
                return report
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                return await _check_page(page, url, deadline, ms, report)
            finally:
                await context.close()


async def _check_page(
    page: Page, url: str, deadline: float, ms: float, report: DoctorReport
) -> DoctorReport:
    try:
        response = await page.goto(url, wait_until="load", timeout=ms)
    except PlaywrightError as exc:
        report.add(f"error: cannot load {url}: {_one_line(exc)}")
        report.exit_code = FAILED
        return report
    if response is not None and response.status >= 400:
        report.add(f"error: cannot load {url}: HTTP {response.status}")
        report.exit_code = FAILED
        return report

    try:
        try:
            bundle = await WhatsAppPage(page).inject_wajs()  # exactly as the gateway does
        except WajsError as exc:
            report.add(f"error: {exc}")
            report.exit_code = FAILED
            return report
        if bundle is None:
            report.add(f"page: {url} (window.WPP already present; nothing injected)")
        else:
            report.add(f"page: {url} (WA-JS injected from {bundle})")
            if not await page.evaluate("typeof window.WPP !== 'undefined'"):
                report.add("error: WA-JS was injected but window.WPP did not appear")
                report.exit_code = MISSING
                return report

        remaining = max(deadline - time.monotonic(), 0.5)
        ready = True
        try:
            await page.wait_for_function(
                "() => !!(window.WPP && window.WPP.isReady)", timeout=remaining * 1000
            )
        except PlaywrightError:
            ready = False
        found = await _probe(page)
    except PlaywrightError as exc:
        report.add(f"error: checking {url} failed: {_one_line(exc)}")
        report.exit_code = FAILED
        return report

    wajs_version = found.get("wajsVersion") or "unknown"
    wa_version = found.get("waVersion")
    supported = found.get("supported")
    report.add(f"WA-JS version: {wajs_version}")
    if ready:
        report.add("WA-JS ready: yes")
    else:
        injected = "injected" if found.get("isInjected") else "not even injected"
        report.add(
            f"WA-JS ready: no (WPP.isReady still false after {ms / 1000:g}s; WA-JS {injected}): "
            "WA-JS did not find WhatsApp's modules on this page"
        )
    report.add(f"WhatsApp Web version: {wa_version or 'unknown'}")
    if supported:
        covered = version_in_range(wa_version, supported) if wa_version else None
        verdict = {True: "covered", False: "NOT covered", None: "unknown"}[covered]
        report.add(f"WA-JS supports WhatsApp Web {supported}: {verdict}")
    else:
        report.add("WA-JS supported range: not available")

    functions: dict[str, bool] = dict(found.get("functions") or {})
    missing = [name for name in GATEWAY_FUNCTIONS if not functions.get(name)]
    for name in GATEWAY_FUNCTIONS:
        report.add(f"{name}: {'present' if functions.get(name) else 'MISSING'}")
    if missing:
        report.add(f"result: {len(missing)} of {len(GATEWAY_FUNCTIONS)} functions missing")
        report.exit_code = MISSING
    elif not ready:
        report.add("result: functions present, but WA-JS is not ready on this page")
        report.exit_code = MISSING
    else:
        report.add(f"result: all {len(GATEWAY_FUNCTIONS)} gateway functions present")
        report.exit_code = OK
    return report


__all__ = ["CHROMIUM", "DEFAULT_URL", "GATEWAY_FUNCTIONS", "DoctorReport", "diagnose"]
