"""The dashboard's routes through ASGI: the files they serve, the page's headers, the pin, and
503 with a clear body while npm has not fetched uPlot (the browser side: tests/e2e)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import pipeline.api.dashboard as dashboard
from pipeline.api.dashboard import CSP, DASHBOARD_DIR, DASHBOARD_PATHS, UPLOT_VERSION
from tests.unit.test_api_auth_and_errors import api, call

pytestmark = pytest.mark.unit

needs_bundle = pytest.mark.skipif(
    dashboard.bundle_missing() is not None, reason="uPlot not fetched: run `make dashboard`"
)


@needs_bundle
def test_the_page_and_its_files_are_served_without_a_token(tmp_path: Path) -> None:
    app = api(tmp_path)
    status, headers, body = call(app, "GET", "/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == CSP and "script-src 'self'" in CSP
    assert headers["x-content-type-options"] == "nosniff"
    page = body.decode()
    # Only the API's own files: no inline script or style, nothing from another host.
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(sources) == sorted(p for p in DASHBOARD_PATHS if p != "/dashboard")
    assert "<script>" not in page and "<style" not in page and "://" not in page
    for path in DASHBOARD_PATHS - {"/dashboard"}:
        status, headers, body = call(app, "GET", path)
        assert status == 200 and body, path
        kind = {"js": "javascript", "css": "css", "svg": "svg"}[path.rsplit(".", 1)[1]]
        assert kind in headers["content-type"], path
    # The trailing slash is the same page.
    status, headers, _ = call(app, "GET", "/dashboard/")
    assert status == 307 and headers["location"].endswith("/dashboard")


def test_the_script_never_puts_data_into_html() -> None:
    script = (DASHBOARD_DIR / "static" / "app.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script


def test_a_missing_bundle_is_503_saying_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "UPLOT_DIR", tmp_path / "nothing-here")
    app = api(tmp_path)
    for path in ("/dashboard", "/dashboard/vendor/uPlot.iife.min.js"):
        status, headers, body = call(app, "GET", path)
        assert status == 503 and headers["retry-after"], path
        error = json.loads(body)
        assert error["code"] == "dashboard_unavailable"
        assert "make dashboard" in error["message"]
    assert call(app, "GET", "/dashboard/app.js")[0] == 200  # the page's own files are there


def test_the_pin_is_the_same_everywhere() -> None:
    package = json.loads((DASHBOARD_DIR / "package.json").read_text())
    lock = json.loads((DASHBOARD_DIR / "package-lock.json").read_text())
    assert package["dependencies"] == {"uplot": UPLOT_VERSION}
    assert lock["packages"]["node_modules/uplot"]["version"] == UPLOT_VERSION
    assert lock["packages"]["node_modules/uplot"]["integrity"].startswith("sha512-")
