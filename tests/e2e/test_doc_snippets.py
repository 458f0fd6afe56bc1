"""Every example the README and the docs mark runnable works as written against ``make dev``.

A block is runnable when the line before its fence is ``<!-- runnable -->`` or
``<!-- runnable: expect "TEXT" -->`` (TEXT must be in what it prints). The test starts what
``make dev`` starts (its own Apache Kafka, then ``python -m pipeline.dev`` with the gateway on
the look-alike and the operator API inside the worker) in a folder of its own, links the bot's
page as a person does (Scan QR), and runs the blocks in the order a newcomer reads the pages,
each with ``bash -e`` in that folder. Only the ports differ from the page: each default port in
a block is replaced by the one this run uses.

Reproduced: the "without a browser" example used account ``100@c.us`` while the look-alike's is
``10000@c.us`` (its reply was never delivered), the operator API example a chat id that exists
nowhere (four ``404 unknown_chat``), and the replay example a ``new-prompt.txt`` nobody makes.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.broker import free_port
from pipeline.testing.workers import WorkerProcess
from tests.conftest import REPO, own_kafka

pytestmark = [pytest.mark.e2e]

#: The pages in the order a newcomer reads them; a runnable block elsewhere fails the test.
PAGES = (
    "README.md",
    "docs/getting-started.md",
    "docs/api.md",
    "docs/replay.md",
    "examples/analytics/README.md",
)
MARKER = re.compile(r'^<!-- runnable(?::\s*expect "(?P<expect>[^"]*)")? -->\n```\w*\n', re.M)


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    code: str
    expect: str | None


def snippets(path: Path) -> list[Snippet]:
    text = path.read_text()
    found = []
    for match in MARKER.finditer(text):
        end = text.index("\n```", match.end() - 1)
        found.append(
            Snippet(
                page=str(path.relative_to(REPO)),
                line=text[: match.start()].count("\n") + 2,
                code=text[match.end() : end + 1],
                expect=match.group("expect"),
            )
        )
    return found


def test_runnable_blocks_are_only_on_the_pages_the_test_reads() -> None:
    pages = [REPO / "README.md", *REPO.glob("docs/**/*.md"), *REPO.glob("examples/**/*.md")]
    marked = {str(p.relative_to(REPO)) for p in pages if snippets(p)}
    assert marked <= set(PAGES), marked - set(PAGES)
    assert len([s for page in PAGES for s in snippets(REPO / page)]) >= 5


def _post(url: str) -> None:
    request = urllib.request.Request(
        url, data=b"{}", headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


async def test_every_runnable_block_works_against_make_dev(tmp_path: Path) -> None:
    missing = [tool for tool in ("curl", "kcat", "jq") if shutil.which(tool) is None]
    assert not missing, f"the examples use {missing}: install them (Debian: apt-get install ...)"
    broker = own_kafka(tmp_path / "kafka")
    info = await broker.start()
    run = tmp_path / "run"  # the newcomer's checkout: .venv and what make dev writes in .data
    run.mkdir()
    (run / ".venv").symlink_to(Path(sys.executable).parent.parent)
    api_port, lookalike_port = free_port(), free_port()
    env = {
        "WABOT_BROKER_URL": f"kafka://{info.bootstrap}",
        "WABOT_DATA_DIR": str(run / ".data"),  # make dev's default, .data in its folder
        "WABOT_GATEWAY_IN_WORKER": "true",
        "WABOT_GATEWAY_LOOKALIKE": "true",
        "WABOT_API_IN_WORKER": "true",
        "WABOT_API_PORT": str(api_port),
        "WABOT_LOOKALIKE_PORT": str(lookalike_port),
    }
    worker = WorkerProcess(
        env, tmp_path / "dev.log", cwd=run, command=[sys.executable, "-m", "pipeline.dev"]
    )
    ports = {
        "9092": str(info.port),
        "6066": str(worker.port),
        "8014": str(api_port),
        "8090": str(lookalike_port),
    }
    try:
        worker.start()
        worker.wait_ready()
        status: dict[str, object] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and status.get("state") != "qr":
            status = worker.get_json("/gateway/status") or {}
            await asyncio.sleep(0.2)
        _post(f"{status['url']}control/scan")  # step 2 of the README: Scan QR
        while time.monotonic() < deadline and status.get("state") != "ready":
            status = worker.get_json("/gateway/status") or {}
            await asyncio.sleep(0.2)
        assert status.get("state") == "ready", (status, worker.tail())

        ran = 0
        for page in PAGES:
            for snippet in snippets(REPO / page):
                code = re.sub(
                    r"(127\.0\.0\.1:)(9092|6066|8014|8090)\b",
                    lambda m: m.group(1) + ports[m.group(2)],
                    snippet.code,
                )
                where = f"{snippet.page}:{snippet.line}"
                done = await asyncio.to_thread(
                    subprocess.run,
                    ["bash", "-e", "-o", "pipefail", "-c", code],
                    cwd=run,
                    env=worker.env,
                    capture_output=True,
                    text=True,
                    timeout=240,
                )
                said = done.stdout + done.stderr
                assert done.returncode == 0, f"{where} exited {done.returncode}:\n{said[-3000:]}"
                assert snippet.expect is None or snippet.expect in done.stdout, (
                    f"{where} did not print {snippet.expect!r}:\n{said[-3000:]}"
                )
                errors = [
                    line for line in done.stdout.splitlines() if '"error"' in line.replace(" ", "")
                ]
                assert not errors, f"{where} answered with an error:\n" + "\n".join(errors)
                ran += 1
        assert ran >= 5
    finally:
        worker.stop(group=True)
        broker.stop()
