"""The replay compare report: pairing, totals, percentiles, cost, Markdown and HTML escaping.

Run folders are built in tmp_path from real ``schemas`` records. :func:`demo_run` is the run the
e2e test opens in Chromium (and screenshots for the docs); its numbers are worked out by hand
below, so the report is checked against arithmetic, not against itself.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from pipeline.replay.report.data import percentile
from pipeline.replay.report.formatting import summary_line
from pipeline.replay.report.html import render_html
from pipeline.replay.report.run_folder import load_run, write_report
from schemas import LLMCall, LLMCallStatus, LLMResult, Turn

pytestmark = pytest.mark.unit

ACCOUNT = "4930000000000@c.us"
ALICE = "4915111111111@c.us"
BOB = "4915222222222@c.us"
CAROL = "971501234567@c.us"
DAVE = "447700900123@c.us"
ERIN = "33612345678@c.us"

ORIGINAL_MODEL = "gpt-4o-mini"
REPLAYED_MODEL = "qwen2.5-7b-instruct"
START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)

INJECTION = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> & co'
INJECTION_TEXT = f"{INJECTION}\nIs my order #1042 delayed?"
ARABIC = "مرحبا، هل لديكم هذا الحذاء باللون الأزرق؟"
ARABIC_REPLY_ORIGINAL = "نعم، الحذاء متوفر باللون الأزرق بجميع المقاسات."
ARABIC_REPLY_REPLAYED = "نعم! اللون الأزرق متوفر من المقاس 38 إلى 45."
EMOJI_REPLY = "You're welcome! 😊😉"


def make_turn(chat_id: str, seq: int, text: str, minute: int) -> Turn:
    """A turn of one message, ``minute`` minutes after START."""
    at = START + timedelta(minutes=minute)
    return Turn(
        turn_id=f"turn-{chat_id.split('@')[0]}-{seq}",
        chat_id=chat_id,
        account_id=ACCOUNT,
        sender_id=chat_id,
        seq=seq,
        message_ids=[f"m{minute}"],
        text=text,
        is_group=False,
        first_received_at=at,
        last_received_at=at,
        created_at=at + timedelta(seconds=2),
    )


@dataclass(frozen=True)
class Call:
    """An LLM call as the tests write it: (model, status, prompt, completion, latency ms)."""

    model: str
    prompt: int = 0
    completion: int = 0
    latency_ms: float = 0.0
    status: LLMCallStatus = "ok"
    error: str | None = None


def make_result(
    turn: Turn, reply: str, calls: list[Call], status: Literal["ok", "fallback"] = "ok"
) -> LLMResult:
    records = [
        LLMCall(
            call_id=f"{turn.turn_id}-{n}",
            turn_id=turn.turn_id,
            chat_id=turn.chat_id,
            model=c.model,
            base_url="" if c.status == "fallback" else "http://127.0.0.1:11434/v1",
            status=c.status,
            attempt=n,
            prompt_tokens=c.prompt,
            completion_tokens=c.completion,
            total_tokens=c.prompt + c.completion,
            latency_ms=c.latency_ms,
            error=c.error,
            at=turn.created_at,
        )
        for n, c in enumerate(calls, start=1)
    ]
    return LLMResult(
        turn=turn,
        reply=reply,
        parts=[reply],
        status=status,
        calls=records,
        total_tokens=sum(r.total_tokens for r in records),
    )


def write_run(
    folder: Path,
    turns: list[Turn],
    original: list[LLMResult],
    replayed: list[LLMResult],
    **info: object,
) -> Path:
    """A run folder as the replay command writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    run: dict[str, object] = {
        "run_id": "20261129-qwen",
        "created_at": "2026-11-30T08:15:00+00:00",
        "source_app": "wabot",
        "selection": "2026-11-29T00:00Z .. 2026-11-30T00:00Z, 5 chats",
        "context": "original",
        "overrides": {"llm_model": REPLAYED_MODEL, "llm_temperature": "0.2"},
        "counts": {
            "inbound_records": 9,
            "dead_letters": 1,
            "skipped": {"rate_limited_chat": 1, "paused": 2},
        },
    }
    run.update(info)
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    for name, records in (("turns", turns), ("original", original), ("replayed", replayed)):
        lines = [r.model_dump_json() for r in records]
        (folder / f"{name}.jsonl").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return folder


def demo_run(folder: Path) -> Path:
    """Eight turns of a shoe shop's day, replayed with another model.

    Hand-worked numbers (original / replayed):
    - changed replies: turns 2, 3, 5, 6 -> 4 of 7 compared; turn 7 has no replayed result;
    - prompt tokens 1,080 / 780, completion 194 / 128, total 1,274 / 908;
    - per-turn latency original [800, 900, 1200, 600, 1000, 1400, 700, 750]: p50 800, p95 1,400;
      replayed [500, 450, 650, 400, 550, 2000, 480]: p50 500, p95 2,000 (nearest rank);
    - fallbacks 0 / 1; errors (calls error or retry) 1 / 1.
    """
    o, r = ORIGINAL_MODEL, REPLAYED_MODEL
    t = [
        make_turn(ALICE, 0, "Hi! Do you ship to Austria?", 0),
        make_turn(ALICE, 1, "How much is shipping?", 2),
        make_turn(BOB, 0, INJECTION_TEXT, 5),
        make_turn(BOB, 1, "ok thanks 😀", 7),
        make_turn(CAROL, 0, ARABIC, 12),
        make_turn(DAVE, 0, "Can I return shoes I wore once outside?", 20),
        make_turn(DAVE, 1, "Hello??", 31),
        make_turn(ERIN, 0, "What are your opening hours on Sunday?", 45),
    ]
    ships = "Yes, we ship to Austria. Delivery takes 3-5 working days."
    sunday = "We are closed on Sundays. Monday to Saturday we are open 9:00-19:00."
    fallback = "Sorry, I can't answer right now. A colleague will get back to you soon."
    original = [
        make_result(t[0], ships, [Call(o, 100, 20, 800)]),
        make_result(
            t[1],
            "Shipping to Austria costs €4.90; orders over €50 ship free.",
            [Call(o, 130, 25, 900)],
        ),
        make_result(
            t[2],
            "Sorry for the wait! Order #1042 left our warehouse yesterday and should "
            "arrive tomorrow.",
            [Call(o, 150, 40, 1200)],
        ),
        make_result(t[3], EMOJI_REPLY, [Call(o, 170, 10, 600)]),
        make_result(t[4], ARABIC_REPLY_ORIGINAL, [Call(o, 120, 30, 1000)]),
        make_result(
            t[5],
            "Worn shoes can be returned within 30 days if the soles are clean.",
            [Call(o, 0, 0, 300, "retry", "timeout"), Call(o, 140, 35, 1100)],
        ),
        make_result(t[6], "Hi Dave! How can I help you?", [Call(o, 160, 12, 700)]),
        make_result(t[7], sunday, [Call(o, 110, 22, 750)]),
    ]
    replayed = [
        make_result(t[0], ships, [Call(r, 100, 20, 500)]),
        make_result(
            t[1],
            "Shipping to Austria is €4.90, and free for orders over €50.",
            [Call(r, 130, 18, 450)],
        ),
        make_result(
            t[2],
            "Sorry for the wait! Order #1042 is on its way and should arrive tomorrow.",
            [Call(r, 150, 30, 650)],
        ),
        make_result(t[3], EMOJI_REPLY, [Call(r, 170, 10, 400)]),
        make_result(t[4], ARABIC_REPLY_REPLAYED, [Call(r, 120, 28, 550)]),
        make_result(
            t[5],
            fallback,
            [Call(r, 0, 0, 2000, "error", "HTTP 503: overloaded"), Call(r, status="fallback")],
            status="fallback",
        ),
        make_result(t[7], sunday, [Call(r, 110, 22, 480)]),
    ]
    return write_run(folder, t, original, replayed)


def md_row(md: str, name: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``name``."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{md}")


# ---------------------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([40, 10, 30, 20], 50) == 20
    assert percentile(list(range(1, 21)), 95) == 19
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([1, 2, 3], 100) == 3


def test_pairs_follow_turns_and_count_changes_and_missing(tmp_path: Path) -> None:
    run = load_run(demo_run(tmp_path / "run"))
    assert run.turns == 8
    assert [p.turn.seq for p in run.pairs] == [0, 1, 0, 1, 0, 0, 1, 0]
    assert [p.changed for p in run.pairs] == [False, True, True, False, True, True, False, False]
    assert run.changed == 4
    assert run.compared == 7
    assert run.missing("original") == 0
    assert run.missing("replayed") == 1
    assert run.pairs[6].replayed is None and run.pairs[6].original is not None
    assert run.notes == []

    retried = run.pairs[5].metrics("original")
    assert retried is not None
    assert (retried.latency_ms, retried.ok_latency_ms, retried.failed_calls) == (1400, 1100, 1)
    assert retried.model == ORIGINAL_MODEL
    fell_back = run.pairs[5].metrics("replayed")
    assert fell_back is not None
    assert (fell_back.status, fell_back.ok_latency_ms, fell_back.latency_ms) == (
        "fallback",
        None,
        2000,
    )
    assert fell_back.model == REPLAYED_MODEL

    emoji = run.pairs[3].metrics("replayed")
    assert emoji is not None and emoji.chars == len(EMOJI_REPLY) == 18


def test_markdown_totals_are_the_hand_worked_numbers(tmp_path: Path) -> None:
    folder = demo_run(tmp_path / "run")
    md_path, html_path = write_report(folder, prices={ORIGINAL_MODEL: (2.5, 10.0)})
    assert (md_path, html_path) == (folder / "report.md", folder / "report.html")
    md = md_path.read_text(encoding="utf-8")

    assert md_row(md, "turns") == ["turns", "8"]
    assert md_row(md, "changed replies") == ["changed replies", "4"]
    assert md_row(md, "compared (both sides)")[1] == "7"
    assert md_row(md, "missing original")[1] == "0"
    assert md_row(md, "missing replayed")[1] == "1"
    assert md_row(md, "prompt tokens") == ["prompt tokens", "1,080", "780", "-300"]
    assert md_row(md, "completion tokens") == ["completion tokens", "194", "128", "-66"]
    assert md_row(md, "total tokens") == ["total tokens", "1,274", "908", "-366"]
    assert md_row(md, "latency p50") == ["latency p50", "800 ms", "500 ms", "-300 ms"]
    assert md_row(md, "latency p95") == ["latency p95", "1,400 ms", "2,000 ms", "+600 ms"]
    assert md_row(md, "fallbacks")[1:3] == ["0", "1"]
    assert md_row(md, "errors (calls error/retry)")[1:3] == ["1", "1"]
    # 1,080 * $2.5/M + 194 * $10/M = $0.00270 + $0.00194; qwen has no price.
    assert md_row(md, "estimated cost")[1:3] == ["$0.004640", "no price"]
    assert md_row(md, "original") == [
        "original",
        ORIGINAL_MODEL,
        "9",
        "1,080",
        "194",
        "1,274",
        "$0.004640",
    ]
    # Seven requests (the fallback marker is no request), 908 tokens, no price for this model.
    assert md_row(md, "replayed") == [
        "replayed",
        REPLAYED_MODEL,
        "7",
        "780",
        "128",
        "908",
        "no price",
    ]
    # Run facts from run.json.
    assert "- selection: 2026-11-29T00:00Z .. 2026-11-30T00:00Z, 5 chats" in md
    assert "- context: original" in md
    assert f"llm\\_model={REPLAYED_MODEL}" in md
    assert "- dead letters: 1" in md
    assert "- skipped decisions: paused: 2, rate\\_limited\\_chat: 1" in md
    # Per turn: a changed turn, the missing side, deltas.
    assert "### 2. 4915111111111@c.us · seq 1 · **CHANGED**" in md
    assert "### 7. 447700900123@c.us · seq 1 · **MISSING REPLAYED**" in md
    assert "### 1. 4915111111111@c.us · seq 0 · same" in md
    assert "| latency | 1,400 ms (ok call 1,100 ms) | 2,000 ms (no ok call) | +600 ms |" in md
    assert "| chars | 18 | 18 | 0 |" in md  # the emoji reply, unchanged


def test_every_model_priced_gives_a_cost_per_side(tmp_path: Path) -> None:
    folder = demo_run(tmp_path / "run")
    prices = {ORIGINAL_MODEL: (0.15, 0.60), REPLAYED_MODEL: (1.0, 2.0)}
    md = write_report(folder, prices)[0].read_text(encoding="utf-8")
    # original: 1,080*0.15 + 194*0.60 = 278.4 micro-USD; replayed: 780*1 + 128*2 = 1,036.
    assert md_row(md, "estimated cost")[1:3] == ["$0.000278", "$0.001036"]
    no_prices = write_report(folder)[0].read_text(encoding="utf-8")
    assert "estimated cost" not in no_prices
    assert md_row(no_prices, "original")[-1] == "no price table"


def test_identical_runs_report_zero_changed(tmp_path: Path) -> None:
    source = load_run(demo_run(tmp_path / "demo"))
    turns = [p.turn for p in source.pairs]
    originals = [p.original for p in source.pairs if p.original is not None]
    folder = write_run(tmp_path / "same", turns, originals, originals)
    md_path, html_path = write_report(folder)
    md = md_path.read_text(encoding="utf-8")
    assert md_row(md, "changed replies") == ["changed replies", "0"]
    assert md_row(md, "missing replayed")[1] == "0"
    assert md_row(md, "total tokens") == ["total tokens", "1,274", "1,274", "0"]
    assert "CHANGED" not in md
    page = html_path.read_text(encoding="utf-8")
    assert 'class="turn changed"' not in page
    assert "<del>" not in page and "<ins>" not in page
    run = load_run(folder)
    assert run.changed == 0
    assert "0 changed" in summary_line(run)


def test_html_escapes_every_text(tmp_path: Path) -> None:
    folder = demo_run(tmp_path / "run")
    # A price table key is text too.
    _, html_path = write_report(folder, prices={"<b>model</b>": (1.0, 1.0)})
    page = html_path.read_text(encoding="utf-8")
    # No script at all on the page, and the injected markup is shown as text.
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<b>model</b>" not in page
    assert html.escape(INJECTION, quote=True) in page
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    assert "default-src 'none'" in page  # the CSP forbids scripts and requests anyway
    # Emoji and right-to-left text are kept as they are, in a dir="auto" block.
    assert ARABIC in page
    assert f'dir="auto">{ARABIC}</p>' in page
    assert html.escape(EMOJI_REPLY) in page
    # Both columns of a changed reply carry word marks: deleted on the left, inserted right.
    assert "<del>" in page and "<ins>" in page
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "<script" not in md and "&lt;script&gt;" in md


def test_html_overrides_and_run_facts_are_escaped(tmp_path: Path) -> None:
    folder = demo_run(tmp_path / "run")
    write_run(
        folder,
        [p.turn for p in load_run(folder).pairs],
        [],
        [],
        overrides={"llm_system_prompt": "Be <em>brief</em> & kind"},
        selection="<i>all</i>",
        context="replayed",
    )
    page = render_html(load_run(folder))
    assert "Be &lt;em&gt;brief&lt;/em&gt; &amp; kind" in page
    assert "&lt;i&gt;all&lt;/i&gt;" in page
    assert "<dt>context</dt><dd>replayed</dd>" in page
    run = load_run(folder)
    assert run.missing("original") == run.missing("replayed") == 8
    assert run.compared == 0
    assert "missing 8/8" in summary_line(run)
    assert "p50 latency n/a → n/a" in summary_line(run)


def test_results_outside_turns_and_duplicates_are_noted(tmp_path: Path) -> None:
    source = load_run(demo_run(tmp_path / "demo"))
    pairs = source.pairs
    first = pairs[0].original
    assert first is not None
    extra = pairs[7].replayed
    assert extra is not None
    folder = write_run(
        tmp_path / "odd",
        [pairs[0].turn],
        [first, first],
        [extra],
    )
    (folder / "original.jsonl").write_text(
        (folder / "original.jsonl").read_text() + "\n\n", encoding="utf-8"
    )
    run = load_run(folder)
    assert [p.in_turns for p in run.pairs] == [True, False]
    assert run.pairs[1].turn.turn_id == extra.turn.turn_id
    assert run.missing("original") == 1 and run.missing("replayed") == 1
    assert any("duplicate" in n for n in run.notes)
    assert any("not in turns.jsonl" in n for n in run.notes)
    md = write_report(folder)[0].read_text(encoding="utf-8")
    assert "not in turns.jsonl" in md


def test_bad_records_name_file_and_line(tmp_path: Path) -> None:
    folder = demo_run(tmp_path / "run")
    with (folder / "replayed.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"reply": "no turn"}\n')
    with pytest.raises(ValueError, match=r"replayed\.jsonl:8: not an LLMResult"):
        load_run(folder)
    (folder / "replayed.jsonl").unlink()
    run = load_run(folder)
    assert run.missing("replayed") == 8
    assert any("replayed.jsonl is absent" in n for n in run.notes)


def test_summary_line(tmp_path: Path) -> None:
    run = load_run(demo_run(tmp_path / "run"))
    assert summary_line(run) == (
        "replay 20261129-qwen: 8 turns, 4 changed (7 compared), missing 0/1, "
        "fallbacks 0 → 1, p50 latency 800 ms → 500 ms"
    )
