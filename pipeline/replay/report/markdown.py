"""``report.md``: the report as Markdown (GitHub flavour; every text from the run is escaped)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from pipeline.replay.report.data import Prices, RunData, SideMetrics, SideTotals, TurnPair
from pipeline.replay.report.formatting import count, delta, ms, side_cost, usd

__all__ = ["render_markdown"]


def _md(text: str) -> str:
    """Text safe for a Markdown table cell: HTML escaped, pipes escaped, lines as ``<br>``."""
    escaped = html.escape(text, quote=False).replace("\\", "\\\\").replace("|", "\\|")
    escaped = escaped.replace("`", "\\`").replace("*", "\\*").replace("_", "\\_")
    return "<br>".join(escaped.splitlines()) or " "


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _side_rows(o: SideTotals, r: SideTotals, prices: Prices | None) -> list[list[str]]:
    rows = [
        ["results", count(o.results), count(r.results), delta(r.results, o.results)],
        ["missing", count(o.missing), count(r.missing), delta(r.missing, o.missing)],
        ["fallbacks", count(o.fallbacks), count(r.fallbacks), delta(r.fallbacks, o.fallbacks)],
        [
            "errors (calls error/retry)",
            count(o.failed_calls),
            count(r.failed_calls),
            delta(r.failed_calls, o.failed_calls),
        ],
        [
            "latency p50",
            ms(o.latency_p50_ms),
            ms(r.latency_p50_ms),
            delta(r.latency_p50_ms, o.latency_p50_ms, " ms"),
        ],
        [
            "latency p95",
            ms(o.latency_p95_ms),
            ms(r.latency_p95_ms),
            delta(r.latency_p95_ms, o.latency_p95_ms, " ms"),
        ],
        [
            "prompt tokens",
            count(o.prompt_tokens),
            count(r.prompt_tokens),
            delta(r.prompt_tokens, o.prompt_tokens),
        ],
        [
            "completion tokens",
            count(o.completion_tokens),
            count(r.completion_tokens),
            delta(r.completion_tokens, o.completion_tokens),
        ],
        [
            "total tokens",
            count(o.total_tokens),
            count(r.total_tokens),
            delta(r.total_tokens, o.total_tokens),
        ],
    ]
    if prices is not None:
        rows.append(["estimated cost", side_cost(o), side_cost(r), ""])
    return rows


def _usage_rows(run: RunData, prices: Prices | None) -> list[list[str]]:
    return [
        [
            u.side,
            _md(u.model),
            count(u.calls),
            count(u.prompt_tokens),
            count(u.completion_tokens),
            count(u.total_tokens),
            usd(u.cost_usd) if prices is not None else "no price table",
        ]
        for u in run.usage(prices)
    ]


def render_markdown(run: RunData, prices: Prices | None = None) -> str:
    """The report as Markdown (GitHub flavour; every text from the run is escaped)."""
    info = run.info
    o, r = run.totals("original", prices), run.totals("replayed", prices)
    out = [f"# Replay report {_md(info.run_id)}", ""]
    out += [
        f"- created: {info.created_at.isoformat()}",
        f"- source app: {_md(info.source_app)}",
        f"- selection: {_md(info.selection)}",
        f"- context: {info.context}",
        "- overrides: "
        + (", ".join(f"{_md(k)}={_md(v)}" for k, v in sorted(info.overrides.items())) or "none"),
        f"- inbound records: {count(info.counts.inbound_records)}",
        f"- operator controls: {count(info.counts.controls)}",
        f"- dead letters: {count(info.counts.dead_letters)}",
        "- skipped decisions: "
        + (
            ", ".join(f"{_md(k)}: {count(v)}" for k, v in sorted(info.counts.skipped.items()))
            or "none"
        ),
        "",
        "## Totals",
        "",
    ]
    out += _md_table(
        ["", "count"],
        [
            ["turns", count(run.turns)],
            ["compared (both sides)", count(run.compared)],
            ["changed replies", count(run.changed)],
            ["missing original", count(o.missing)],
            ["missing replayed", count(r.missing)],
        ],
    )
    one_side = run.one_side_only()
    if one_side:
        out += ["", "## One side only", ""]
        out += _md_table(
            ["", "why", "turns"],
            [[f"no {side} result", _md(reason), count(n)] for side, reason, n in one_side],
        )
    out += ["", "## By side", ""]
    out += _md_table(["", "original", "replayed", "delta"], _side_rows(o, r, prices))
    out += ["", "## Tokens and cost by model", ""]
    usage = _usage_rows(run, prices)
    if usage:
        out += _md_table(
            ["side", "model", "calls", "prompt", "completion", "total", "est. cost"], usage
        )
    else:
        out.append("No LLM calls.")
    if prices is not None:
        out += [
            "",
            "Prices (USD per 1M prompt / completion tokens): "
            + (
                ", ".join(f"{_md(m)} {p:g} / {c:g}" for m, (p, c) in sorted(prices.items()))
                or "none"
            ),
        ]
    if run.notes:
        out += ["", "## Notes", ""] + [f"- {_md(n)}" for n in run.notes]
    out += ["", "## Turns", ""]
    for index, pair in enumerate(run.pairs, start=1):
        out += _md_turn(index, pair)
    return "\n".join(out).rstrip() + "\n"


def _md_turn(index: int, pair: TurnPair) -> list[str]:
    turn = pair.turn
    mo, mr = pair.metrics("original"), pair.metrics("replayed")
    if pair.changed:
        mark = "**CHANGED**"
    elif not pair.complete:
        mark = "**MISSING " + ("ORIGINAL" if mo is None else "REPLAYED") + "**"
        if mo is None and mr is None:
            mark = "**MISSING BOTH**"
    else:
        mark = "same"
    extra = "" if pair.in_turns else " · not in turns.jsonl"
    lines = [f"### {index}. {_md(turn.chat_id)} · seq {turn.seq} · {mark}{extra}", ""]
    lines += ["> " + _md(turn.text), ""]
    lines += [f"No {side} result: {_md(reason)}.  " for side, reason in pair.reasons.items()]
    if pair.reasons:
        lines.append("")

    def cell(m: SideMetrics | None, value: str) -> str:
        return "*missing*" if m is None else value

    def lat(m: SideMetrics) -> str:
        if m.ok_latency_ms is None:
            return f"{ms(m.latency_ms)} (no ok call)"
        if round(m.ok_latency_ms) == round(m.latency_ms):
            return ms(m.latency_ms)
        return f"{ms(m.latency_ms)} (ok call {ms(m.ok_latency_ms)})"

    def tok(m: SideMetrics) -> str:
        return f"{count(m.total_tokens)} ({count(m.prompt_tokens)} + {count(m.completion_tokens)})"

    def both(get: str) -> tuple[float | None, float | None]:
        return (
            None if mo is None else float(getattr(mo, get)),
            None if mr is None else float(getattr(mr, get)),
        )

    rows = [
        ["reply", cell(mo, _md(mo.reply) if mo else ""), cell(mr, _md(mr.reply) if mr else ""), ""],
        [
            "chars",
            cell(mo, count(mo.chars) if mo else ""),
            cell(mr, count(mr.chars) if mr else ""),
            delta(both("chars")[1], both("chars")[0]),
        ],
        [
            "latency",
            cell(mo, lat(mo) if mo else ""),
            cell(mr, lat(mr) if mr else ""),
            delta(both("latency_ms")[1], both("latency_ms")[0], " ms"),
        ],
        [
            "tokens",
            cell(mo, tok(mo) if mo else ""),
            cell(mr, tok(mr) if mr else ""),
            delta(both("total_tokens")[1], both("total_tokens")[0]),
        ],
        ["model", cell(mo, _md(mo.model) if mo else ""), cell(mr, _md(mr.model) if mr else ""), ""],
        ["status", cell(mo, mo.status if mo else ""), cell(mr, mr.status if mr else ""), ""],
    ]
    return [*lines, *_md_table(["", "original", "replayed", "delta"], rows), ""]
