"""``report.html``: the report as one self-contained page (inline CSS, no script, no network).

Every text from the run is HTML-escaped; a changed reply shows its words only on one side marked
(``<del>``/``<ins>``); a CSS-only checkbox hides the turns whose reply did not change.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Iterable, Sequence

from pipeline.replay.reasons import Side
from pipeline.replay.report.data import Prices, RunData, SideMetrics, SideTotals, TurnPair
from pipeline.replay.report.formatting import arrow, count, delta, ms, side_cost, usd

__all__ = ["render_html"]


def _h(text: str) -> str:
    return html.escape(text, quote=True)


#: A word with the whitespace after it (so a changed run of words is marked as one piece).
_TOKENS = re.compile(r"\S+\s*|\s+")
_DIFF_LIMIT = 4000  # tokens on both sides; above it a changed reply is shown without word marks


def _diff_html(old: str, new: str) -> tuple[str, str]:
    """Both replies as escaped HTML, words only in ``old`` in ``<del>``, only in ``new`` in
    ``<ins>``."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    if len(a) + len(b) > _DIFF_LIMIT:
        return _h(old), _h(new)
    left: list[str] = []
    right: list[str] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old_part, new_part = "".join(a[i1:i2]), "".join(b[j1:j2])
        if op == "equal":
            left.append(_h(old_part))
            right.append(_h(new_part))
            continue
        if old_part:
            left.append(f"<del>{_h(old_part)}</del>")
        if new_part:
            right.append(f"<ins>{_h(new_part)}</ins>")
    return "".join(left), "".join(right)


_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--card:#fff;--accent:#0969da;
--chg:#bf8700;--chg-bg:#fff8c5;--bad:#cf222e;--bad-bg:#ffebe9;--good:#1a7f37;--good-bg:#dafbe1}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"Noto Sans",Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 24px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
.sub{color:var(--muted);margin:0 0 16px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:var(--card);
border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:0}
.meta dt{color:var(--muted)}.meta dd{margin:0;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:10px;margin:16px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:19px;font-weight:600;font-variant-numeric:tabular-nums}
.card .v small{font-size:13px;font-weight:400;color:var(--muted)}
.card.chg{border-color:var(--chg);background:var(--chg-bg)}
.tables{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.4fr);gap:16px;align-items:start}
table.usage td:nth-child(2),table.usage th:nth-child(2){text-align:left}
table.one-side td:nth-child(2),table.one-side th:nth-child(2){text-align:left;white-space:normal}
table.num{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);
border-radius:8px;overflow:hidden;font-variant-numeric:tabular-nums}
table.num th,table.num td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;
white-space:nowrap}
table.num th:first-child,table.num td:first-child{text-align:left}
table.num td.l{text-align:left;overflow-wrap:anywhere;white-space:normal}
table.num thead th{background:var(--bg);font-weight:600;color:var(--muted);font-size:12px}
table.num tr:last-child td{border-bottom:0}
.up{color:var(--bad)}.down{color:var(--good)}.na{color:var(--muted)}
.filter{display:flex;align-items:center;gap:8px;margin:28px 0 10px}
.filter h2{margin:0 auto 0 0}
.filter label{cursor:pointer;user-select:none;color:var(--muted);border:1px solid var(--line);
background:var(--card);border-radius:6px;padding:3px 10px}
.filter label::before{content:"\\2610";margin-right:6px}
#only-changed{position:absolute;opacity:0;pointer-events:none}
#only-changed:checked~.filter label{color:var(--fg);border-color:var(--chg);
background:var(--chg-bg)}
#only-changed:checked~.filter label::before{content:"\\2611"}
#only-changed:focus-visible~.filter label{outline:2px solid var(--accent)}
#only-changed:checked~.turns .turn:not(.changed){display:none}
.turn{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--line);
border-radius:8px;margin:0 0 12px;overflow:hidden}
.turn.changed{border-left-color:var(--chg)}.turn.missing{border-left-color:var(--bad)}
.turn-head{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:baseline;padding:8px 14px;
border-bottom:1px solid var(--line);background:#fbfcfd}
.turn-head .idx{font-weight:600}.turn-head .mono{color:var(--muted)}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:1px 8px;border-radius:10px;
text-transform:uppercase;letter-spacing:.04em;border:1px solid}
.b-chg{color:#7d4e00;background:var(--chg-bg);border-color:var(--chg)}
.b-same{color:var(--muted);background:var(--bg);border-color:var(--line)}
.b-bad{color:var(--bad);background:var(--bad-bg);border-color:var(--bad)}
.customer{padding:8px 14px;border-bottom:1px solid var(--line)}
.label{display:block;color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em;
margin-bottom:2px}
.text{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;unicode-bidi:plaintext}
table.sides{width:100%;border-collapse:collapse;table-layout:fixed}
table.sides td{width:50%;vertical-align:top;padding:8px 14px}
table.sides td+td{border-left:1px solid var(--line)}
table.sides td.missing{background:repeating-linear-gradient(135deg,#fff,#fff 8px,#f6f8fa 8px,
#f6f8fa 16px);color:var(--muted);font-style:italic}
.facts{display:flex;flex-wrap:wrap;gap:2px 12px;margin-top:8px;color:var(--muted);font-size:12.5px;
font-variant-numeric:tabular-nums}
.facts b{color:var(--fg);font-weight:600}
del{background:#ffd7d5;color:#82071e;text-decoration:none}
ins{background:#ccffd8;color:#055d20;text-decoration:none}
.notes{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:24px}
@media (max-width:900px){.tables{grid-template-columns:1fr}
.cards{grid-template-columns:repeat(2,1fr)}}
@media print{#only-changed,.filter label{display:none}.turn{break-inside:avoid}}
"""


def _delta_html(new: float | None, old: float | None, unit: str = "", judge: bool = True) -> str:
    """A signed delta; with ``judge`` an increase is red and a decrease green (lower is better)."""
    text = delta(new, old, unit)
    if new is None or old is None:
        return '<span class="na">n/a</span>'
    diff = round(new - old)
    if diff == 0:
        return f'<span class="na">±0{_h(unit)}</span>'
    if not judge:
        return f"<span>{_h(text)}</span>"
    return f'<span class="{"up" if diff > 0 else "down"}">{_h(text)}</span>'


def _html_num_table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "num") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_side_table(o: SideTotals, r: SideTotals, prices: Prices | None) -> str:
    def row(name: str, a: float | None, b: float | None, fmt: str, unit: str = "") -> list[str]:
        show = ms if fmt == "ms" else (lambda v: "n/a" if v is None else count(int(v)))
        return [_h(name), _h(show(a)), _h(show(b)), _delta_html(b, a, unit, name != "results")]

    rows = [
        row("results", o.results, r.results, "int"),
        row("missing", o.missing, r.missing, "int"),
        row("fallbacks", o.fallbacks, r.fallbacks, "int"),
        row("errors (calls error/retry)", o.failed_calls, r.failed_calls, "int"),
        row("latency p50", o.latency_p50_ms, r.latency_p50_ms, "ms", " ms"),
        row("latency p95", o.latency_p95_ms, r.latency_p95_ms, "ms", " ms"),
        row("prompt tokens", o.prompt_tokens, r.prompt_tokens, "int"),
        row("completion tokens", o.completion_tokens, r.completion_tokens, "int"),
        row("total tokens", o.total_tokens, r.total_tokens, "int"),
    ]
    if prices is not None:
        rows.append(["estimated cost", _h(side_cost(o)), _h(side_cost(r)), ""])
    return _html_num_table(["by side", "original", "replayed", "delta"], rows)


def _html_usage_table(run: RunData, prices: Prices | None) -> str:
    usage = run.usage(prices)
    if not usage:
        return '<p class="notes">No LLM calls.</p>'
    rows = [
        [
            _h(u.side),
            f'<span class="mono">{_h(u.model)}</span>',
            count(u.calls),
            count(u.prompt_tokens),
            count(u.completion_tokens),
            count(u.total_tokens),
            _h(usd(u.cost_usd)) if prices is not None else '<span class="na">no price table</span>',
        ]
        for u in usage
    ]
    return _html_num_table(
        ["side", "model", "calls", "prompt", "completion", "total", "est. cost"], rows, "num usage"
    )


def _facts(m: SideMetrics, other: SideMetrics | None) -> str:
    def d(new: float, old: float | None, unit: str = "", judge: bool = True) -> str:
        if other is None or old is None:
            return ""
        return " (" + _delta_html(new, old, unit, judge) + ")"

    ok = m.ok_latency_ms
    latency = f"<b>{_h(ms(m.latency_ms))}</b>" + d(
        m.latency_ms, other.latency_ms if other else None, " ms"
    )
    if ok is None:
        latency += ", no ok call"
    elif round(ok) != round(m.latency_ms):
        latency += f", ok call {_h(ms(ok))}"
    status_cls = "b-bad" if m.status == "fallback" else "b-same"
    parts = [
        f'<span class="badge {status_cls}">{_h(m.status)}</span>',
        f'<span class="mono" title="model">{_h(m.model)}</span>',
        f"<span><b>{count(m.chars)}</b> chars"
        + d(m.chars, other.chars if other else None, judge=False)
        + "</span>",
        f"<span>{latency}</span>",
        f'<span title="{count(m.prompt_tokens)} prompt + {count(m.completion_tokens)} completion">'
        f"<b>{count(m.total_tokens)}</b> tokens"
        + d(m.total_tokens, other.total_tokens if other else None)
        + "</span>",
    ]
    if m.failed_calls:
        parts.append(f'<span class="up">{m.failed_calls} failed call(s)</span>')
    return '<div class="facts">' + "".join(parts) + "</div>"


def _html_turn(index: int, pair: TurnPair) -> str:
    turn = pair.turn
    mo, mr = pair.metrics("original"), pair.metrics("replayed")
    classes = ["turn"]
    badges: list[str] = []
    if pair.changed:
        classes.append("changed")
        badges.append('<span class="badge b-chg">changed</span>')
    elif pair.complete:
        badges.append('<span class="badge b-same">same reply</span>')
    if mo is None:
        classes.append("missing")
        badges.append('<span class="badge b-bad">original missing</span>')
    if mr is None:
        classes.append("missing")
        badges.append('<span class="badge b-bad">replayed missing</span>')
    if not pair.in_turns:
        badges.append('<span class="badge b-same">not in turns.jsonl</span>')
    if mo is not None and mr is not None and pair.changed:
        left, right = _diff_html(mo.reply, mr.reply)
    else:
        left = _h(mo.reply) if mo else ""
        right = _h(mr.reply) if mr else ""

    def cell(side: Side, m: SideMetrics | None, body: str, other: SideMetrics | None) -> str:
        if m is None:
            why = pair.reasons.get(side)
            because = f': <span class="why">{_h(why)}</span>' if why else ""
            return (
                f'<td class="side missing" data-side="{side}">'
                f'<span class="label">{side}</span>no {side} result for this turn{because}</td>'
            )
        return (
            f'<td class="side" data-side="{side}"><span class="label">{side}</span>'
            f'<p class="text reply" dir="auto">{body}</p>{_facts(m, other)}</td>'
        )

    messages = len(turn.message_ids)
    return (
        f'<article class="{" ".join(classes)}" id="turn-{index}" data-turn-id="{_h(turn.turn_id)}">'
        f'<div class="turn-head"><span class="idx">#{index}</span>'
        f'<span class="mono" title="chat id">{_h(turn.chat_id)}</span>'
        f"<span>seq {turn.seq}</span>"
        f"<span>{messages} message{'s' if messages != 1 else ''}</span>"
        f"{''.join(badges)}</div>"
        f'<div class="customer"><span class="label">customer</span>'
        f'<p class="text customer-text" dir="auto">{_h(turn.text)}</p></div>'
        f'<table class="sides"><tr>{cell("original", mo, left, None)}'
        f"{cell('replayed', mr, right, mo)}</tr></table></article>"
    )


def render_html(run: RunData, prices: Prices | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, no script, no network).

    Every text from the run is HTML-escaped. A CSS-only checkbox ("show only changed") hides the
    turns whose reply did not change.
    """
    info = run.info
    o, r = run.totals("original", prices), run.totals("replayed", prices)
    overrides = (
        ", ".join(
            f"<code>{_h(k)}</code>=<code>{_h(v)}</code>" for k, v in sorted(info.overrides.items())
        )
        or '<span class="na">none</span>'
    )
    skipped = (
        ", ".join(f"{_h(k)}: {count(v)}" for k, v in sorted(info.counts.skipped.items()))
        or '<span class="na">none</span>'
    )
    meta = [
        ("selection", _h(info.selection) or '<span class="na">n/a</span>'),
        ("context", _h(info.context)),
        ("overrides", overrides),
        ("source app", _h(info.source_app) or '<span class="na">n/a</span>'),
        ("created", _h(info.created_at.isoformat(timespec="seconds"))),
        ("inbound records", count(info.counts.inbound_records)),
        ("operator controls", count(info.counts.controls)),
        ("dead letters", count(info.counts.dead_letters)),
        ("skipped decisions", skipped),
    ]

    def card(key: str, value: str, extra: str = "", cls: str = "") -> str:
        return (
            f'<div class="card {cls}" data-total="{_h(key)}"><div class="k">{_h(key)}</div>'
            f'<div class="v">{value}{extra}</div></div>'
        )

    cards = [
        card("turns", count(run.turns)),
        card(
            "changed replies",
            count(run.changed),
            f" <small>of {count(run.compared)} compared</small>",
            "chg" if run.changed else "",
        ),
        card("missing sides", f"{o.missing} / {r.missing}", " <small>orig / replay</small>"),
        card("fallbacks", _h(arrow(count(o.fallbacks), count(r.fallbacks)))),
        card(
            "errors",
            _h(arrow(count(o.failed_calls), count(r.failed_calls))),
            " <small>error/retry calls</small>",
        ),
        card("latency p50", _h(arrow(ms(o.latency_p50_ms), ms(r.latency_p50_ms)))),
        card("latency p95", _h(arrow(ms(o.latency_p95_ms), ms(r.latency_p95_ms)))),
    ]
    if prices is not None:
        cards.append(card("est. cost", _h(arrow(side_cost(o), side_cost(r)))))
    notes = ""
    if run.notes:
        notes = (
            '<h2>Notes</h2><ul class="notes">'
            + "".join(f"<li>{_h(n)}</li>" for n in run.notes)
            + "</ul>"
        )
    price_note = ""
    if prices is not None:
        listed = ", ".join(f"{_h(m)} ${p:g} / ${c:g}" for m, (p, c) in sorted(prices.items()))
        price_note = (
            f'<p class="notes">Prices, USD per 1M prompt / completion tokens: {listed or "none"}.'
            " Errors count LLM calls with status error or retry. Latency per turn sums its"
            " calls.</p>"
        )
    else:
        price_note = (
            '<p class="notes">Errors count LLM calls with status error or retry. Latency per'
            " turn sums its calls.</p>"
        )
    one_side = ""
    if run.one_side_only():
        one_side = "<h2>One side only</h2>" + _html_num_table(
            ["one side only", "why", "turns"],
            [
                [f"no {_h(side)} result", f'<span class="why">{_h(reason)}</span>', count(n)]
                for side, reason, n in run.one_side_only()
            ],
            "num one-side",
        )
    turns = "".join(_html_turn(i, p) for i, p in enumerate(run.pairs, start=1))
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    page = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        f"<title>Replay {_h(info.run_id)}</title><style>{_CSS}</style></head><body><main>",
        f'<h1>Replay report <span class="mono">{_h(info.run_id)}</span></h1>',
        f'<p class="sub">original (live bot) vs replayed · {count(run.turns)} turns</p>',
        '<dl class="meta">',
        "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta),
        "</dl>",
        f'<div class="cards">{"".join(cards)}</div>',
        '<div class="tables">',
        _html_side_table(o, r, prices),
        _html_usage_table(run, prices),
        "</div>",
        price_note,
        one_side,
        notes,
        '<input type="checkbox" id="only-changed">',
        '<div class="filter"><h2>Turns</h2>',
        '<label for="only-changed">show only changed replies</label></div>',
        f'<div class="turns">{turns}</div>',
        f"<footer>written by pipeline.replay.report · run folder {_h(run.folder.name)}</footer>",
        "</main></body></html>\n",
    ]
    return "".join(page)
