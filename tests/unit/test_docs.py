"""The documentation site (``mkdocs.yml``, ``docs/``): it builds with ``mkdocs build --strict``
(a broken link or anchor fails it), its generated parts hold what the code knows, its tables
agree with the code, and its pages speak of the product, not of how it was made."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from agents.guard.fates import FATES
from pipeline.config.settings import ENV_PREFIX, Settings, env_name
from schemas import DECISION_REASONS, MessageType

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")

#: The pages and the benchmarks' history speak of dates, not of who worked when.
WORK_SESSION = re.compile(
    r"\b(first|second|third|fourth|fifth|sixth|earlier|previous|this|that|the)\s+session",
    re.IGNORECASE,
)
ISSUE = re.compile(r"\bissue\s*#?\d", re.IGNORECASE)
TRACKER = re.compile(r"\b(issue )?tracker\b", re.IGNORECASE)

#: The words of the message-type table for each fate in ``agents.guard.fates.FATES``.
DOC_FATES = {
    "text": "answered",
    "caption": "answered with its text, else unreadable",
    "unreadable": "unreadable",
    "system": "ignored (system_message)",
    "placeholder": "ignored (ciphertext)",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    # No WABOT_* variable of the caller's shell changes what the hook generates.
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["NO_MKDOCS_2_WARNING"] = "1"
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    return out


def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    for page in DOCS.glob("*.md"):
        assert (site / page.with_suffix(".html").name).is_file(), page.name


def test_every_page_is_in_the_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if not re.search(rf":\s+{p.name}\s*$", nav, re.M)]
    assert not missing, f"pages missing from the nav in mkdocs.yml: {missing}"


def test_configuration_page_lists_every_setting(site: Path) -> None:
    html = (site / "configuration.html").read_text(encoding="utf-8")
    assert "settings-table" not in html, "the hook left its marker in the page"
    missing = [
        env_name(name)
        for name in Settings.model_fields
        if f"<td><code>{env_name(name)}</code></td>" not in html
    ]
    assert not missing, f"settings missing from configuration.html: {missing}"


def _endpoint_row(method: str, path: str) -> re.Pattern[str]:
    return re.compile(rf"<td><code>{method}</code></td>\s*<td><code>{re.escape(path)}</code></td>")


def test_api_page_lists_every_endpoint_of_the_openapi_document(site: Path) -> None:
    html = (site / "api.html").read_text(encoding="utf-8")
    assert "api-endpoints" not in html, "the hook left its marker in the page"
    assert _endpoint_row("POST", "/api/messages").search(html)
    document = json.loads((site / "openapi.json").read_text(encoding="utf-8"))
    assert document["info"]["title"] == "wabot operator API"
    operations = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops]
    assert ("POST", "/api/messages") in operations
    missing = [op for op in operations if not _endpoint_row(*op).search(html)]
    assert not missing, f"endpoints missing from api.html: {missing}"
    assert 'href="openapi.json"' in html


def test_no_page_speaks_of_work_sessions_or_issues() -> None:
    texts = [*sorted(DOCS.rglob("*.md")), REPO / "bench" / "README.md", REPO / "mkdocs.yml"]
    found = []
    for path in texts:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if WORK_SESSION.search(line) or ISSUE.search(line) or TRACKER.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "write dates, not sessions or issues:\n" + "\n".join(found)


def test_message_type_table_gives_every_type_its_fate() -> None:
    page = (DOCS / "whatsapp-gateway.md").read_text(encoding="utf-8")
    listed: dict[str, str] = {}
    for line in page.splitlines():
        row = re.fullmatch(r"\| (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*) \| ([^|]+) \|", line.strip())
        if row and row.group(2).strip() in DOC_FATES.values():
            for name in re.findall(r"`([a-z0-9_]+)`", row.group(1)):
                listed[name] = row.group(2).strip()
    assert set(FATES) == set(get_args(MessageType))
    expected = {t: DOC_FATES[fate] for t, fate in FATES.items()}
    assert {t: listed.get(t) for t in expected} == expected


def test_guarantees_page_explains_every_decision_reason() -> None:
    page = (DOCS / "guarantees.md").read_text(encoding="utf-8")
    assert "## Why a message got no answer" in page
    section = page.split("## Why a message got no answer", 1)[-1].split("\n#", 1)[0]
    explained = re.findall(r"^\| `([a-z_]+)` \| \S", section, re.M)
    assert len(explained) == len(set(explained))
    assert set(explained) == set(DECISION_REASONS), (
        f"missing: {sorted(set(DECISION_REASONS) - set(explained))}; "
        f"unknown: {sorted(set(explained) - set(DECISION_REASONS))}"
    )


def test_the_lookalike_screenshot_in_the_docs_is_the_current_one() -> None:
    original = REPO / "pipeline" / "dev" / "lookalike" / "conversation.png"
    assert (DOCS / "img" / "conversation.png").read_bytes() == original.read_bytes(), (
        "copy pipeline/dev/lookalike/conversation.png to docs/img/conversation.png"
    )
