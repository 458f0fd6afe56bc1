"""``faust -A pipeline gateway-doctor`` against the look-alike and against a page with no WhatsApp.

The command runs as a subprocess, as a user runs it: the look-alike passes (its ``window.WPP``
is already there, so nothing is injected); a blank page gets the real WA-JS bundle injected,
which finds none of WhatsApp's modules, and the doctor says so without a traceback.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.lookalike import run_in_thread
from pipeline.gateway.doctor import GATEWAY_FUNCTIONS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAUST = Path(sys.executable).with_name("faust")
LOOKALIKE_WA_VERSION = "2.3000.1038792969-lookalike"
"""``WPP.conn.getBuildConstants().VERSION_STR`` in pipeline/dev/lookalike/static/wpp.js."""


def doctor(url: str, timeout: float, limit: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAUST, "-A", "pipeline", "gateway-doctor", "--url", url, "--timeout", str(timeout)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
    )


@pytest.fixture
def blank_site(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_text(
        "<!doctype html><html><head><title>blank</title></head><body></body></html>"
    )

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_lookalike_passes() -> None:
    with run_in_thread() as lookalike:
        done = doctor(lookalike.base_url + "/", 20)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in out + done.stderr
    assert "WA-JS version: 4.6.0-lookalike" in out
    assert f"WhatsApp Web version: {LOOKALIKE_WA_VERSION}" in out
    assert "WA-JS ready: yes" in out
    assert ": covered" in out
    for name in GATEWAY_FUNCTIONS:
        assert f"{name}: present" in out
    assert "MISSING" not in out


def test_blank_page_fails_clearly(blank_site: str) -> None:
    began = time.monotonic()
    done = doctor(blank_site, 5, limit=60)
    elapsed = time.monotonic() - began
    text = done.stdout + done.stderr
    assert done.returncode in (1, 2), text
    assert "Traceback" not in text
    assert elapsed < 45, f"took {elapsed:.1f}s"
    assert "WA-JS injected from" in text
    assert "WA-JS ready: no" in text
    assert "did not find WhatsApp's modules" in text
    assert "WhatsApp Web version: unknown" in text
