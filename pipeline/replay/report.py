"""The compare report of a replay run: what the live bot answered next to what the replay answered.

A replay run folder ``<data_dir>/replays/<run_id>/`` holds ``run.json`` (:class:`RunInfo`),
``turns.jsonl`` (one :class:`schemas.Turn` per line, in topic order), ``original.jsonl`` and
``replayed.jsonl`` (one :class:`schemas.LLMResult` per line each; either may lack some turns),
and what each side did with the messages besides answering them (:mod:`pipeline.replay.reasons`).
:func:`load_run` pairs the two results of every turn by ``turn_id`` and says why a turn has a
result on one side only; :func:`write_report` writes
``report.md`` and ``report.html`` (one self-contained page: inline CSS, no script, no network)
into the folder; :func:`summary_line` is the one line a terminal shows at the end of a replay.

Units everywhere: latency in milliseconds, lengths in characters (Python ``len``, so one code
point is one character), tokens as the LLM endpoint counted them, cost in USD from a price table
of USD per 1,000,000 tokens.
"""

from __future__ import annotations

import difflib
import html
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.replay.reasons import (
    CONTROLS_FILE,
    DECISIONS_FILES,
    MESSAGES_FILE,
    ORIGINAL_TURNS_FILE,
    Side,
    load_evidence,
    missing_reason,
)
from schemas import LLMResult, Turn

__all__ = [
    "CONTROLS_FILE",
    "DECISIONS_FILES",
    "FAILED_CALL_STATUSES",
    "MESSAGES_FILE",
    "ORIGINAL_TURNS_FILE",
    "ModelUsage",
    "Prices",
    "RunCounts",
    "RunData",
    "RunInfo",
    "Side",
    "SideMetrics",
    "SideTotals",
    "TurnPair",
    "load_run",
    "percentile",
    "render_html",
    "render_markdown",
    "summary_line",
    "write_report",
]

SIDES: tuple[Side, Side] = ("original", "replayed")

#: model name -> (USD per 1,000,000 prompt tokens, USD per 1,000,000 completion tokens).
Prices = Mapping[str, tuple[float, float]]

#: LLM call statuses counted as errors of a side: a refused call and an attempt that was retried.
FAILED_CALL_STATUSES: frozenset[str] = frozenset({"error", "retry"})
#: Call records that are no request to the endpoint (the fallback marker, a skipped call).
_NOT_REQUESTS: frozenset[str] = frozenset({"fallback", "skipped"})

RUN_FILE = "run.json"
TURNS_FILE = "turns.jsonl"
RESULT_FILES: dict[Side, str] = {"original": "original.jsonl", "replayed": "replayed.jsonl"}
REPORT_MD = "report.md"
REPORT_HTML = "report.html"

# ---------------------------------------------------------------------------------------------
# The run folder
# ---------------------------------------------------------------------------------------------


class RunCounts(BaseModel):
    """``run.json`` counts: inbound records and operator controls replayed, dead letters, guard
    decisions that skipped."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    inbound_records: int = Field(0, ge=0)
    controls: int = Field(0, ge=0, description="chat.control records replayed")
    dead_letters: int = Field(0, ge=0)
    skipped: dict[str, int] = Field(default_factory=dict, description="decision -> turns")


class RunInfo(BaseModel):
    """``run.json``: what was replayed, how, with which setting overrides (name -> value)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    created_at: datetime
    source_app: str = ""
    selection: str = ""
    context: Literal["original", "replayed"] = "original"
    overrides: dict[str, str] = Field(default_factory=dict)
    counts: RunCounts = Field(default_factory=RunCounts)


@dataclass(frozen=True)
class SideMetrics:
    """The numbers of one side (original or replayed) of one turn, from its :class:`LLMResult`.

    ``latency_ms`` sums ``latency_ms`` over every call of the turn (retries and refused calls
    included); ``ok_latency_ms`` is the latency of the call that answered (``None`` when none
    did). Tokens are summed over the calls (``total_tokens`` falls back to the result's own
    ``total_tokens`` when it carries no calls). ``model`` is the model of the answering call, else
    of the last call, else ``"?"``. ``failed_calls`` counts calls with status error or retry.
    """

    reply: str
    chars: int
    status: Literal["ok", "fallback"]
    model: str
    latency_ms: float
    ok_latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    failed_calls: int

    @classmethod
    def of(cls, result: LLMResult) -> SideMetrics:
        """The metrics of ``result``."""
        calls = result.calls
        ok = [c for c in calls if c.status == "ok"]
        requests = [c for c in calls if c.status not in _NOT_REQUESTS]
        chosen = ok[-1] if ok else (requests[-1] if requests else (calls[-1] if calls else None))
        total = sum(c.total_tokens for c in calls) if calls else result.total_tokens
        return cls(
            reply=result.reply,
            chars=len(result.reply),
            status=result.status,
            model=chosen.model if chosen is not None and chosen.model else "?",
            latency_ms=sum(c.latency_ms for c in calls),
            ok_latency_ms=ok[-1].latency_ms if ok else None,
            prompt_tokens=sum(c.prompt_tokens for c in calls),
            completion_tokens=sum(c.completion_tokens for c in calls),
            total_tokens=total,
            failed_calls=sum(1 for c in calls if c.status in FAILED_CALL_STATUSES),
        )


@dataclass(frozen=True)
class TurnPair:
    """One turn and the result of each side (``None``: that side has no result for the turn).

    ``in_turns`` is False for a turn known only from a result (not in ``turns.jsonl``); it is
    listed after the others, with the turn the result carries. ``reasons``: for each side
    without a result, why (:func:`pipeline.replay.reasons.missing_reason`).
    """

    turn: Turn
    original: LLMResult | None
    replayed: LLMResult | None
    in_turns: bool = True
    reasons: Mapping[Side, str] = field(default_factory=dict)

    @property
    def one_side_only(self) -> Side | None:
        """The side missing when exactly one side has a result, else None."""
        if self.original is None and self.replayed is not None:
            return "original"
        if self.replayed is None and self.original is not None:
            return "replayed"
        return None

    def result(self, side: Side) -> LLMResult | None:
        """The result of ``side`` (``"original"`` or ``"replayed"``)."""
        return self.original if side == "original" else self.replayed

    def metrics(self, side: Side) -> SideMetrics | None:
        """The :class:`SideMetrics` of ``side``, or ``None`` when that side is missing."""
        result = self.result(side)
        return None if result is None else SideMetrics.of(result)

    @property
    def complete(self) -> bool:
        """Both sides are present, so the replies can be compared."""
        return self.original is not None and self.replayed is not None

    @property
    def changed(self) -> bool:
        """Both sides are present and the reply texts differ (exact comparison)."""
        return (
            self.original is not None
            and self.replayed is not None
            and self.original.reply != self.replayed.reply
        )


@dataclass(frozen=True)
class ModelUsage:
    """Tokens of one side and one model, summed over its calls; ``cost_usd`` None: no price."""

    side: Side
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class SideTotals:
    """Totals of one side over the turns where it is present.

    ``latency_p50_ms``/``latency_p95_ms``: nearest-rank percentiles of the per-turn latency (sum
    over the turn's calls), ``None`` without results. ``cost_usd`` sums the priced models;
    ``unpriced`` names the models of this side without a price.
    """

    side: Side
    results: int
    missing: int
    fallbacks: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: float | None
    unpriced: tuple[str, ...]


@dataclass
class RunData:
    """A loaded run folder: ``info`` (run.json) and one :class:`TurnPair` per turn, in order.

    ``notes`` holds what the loader noticed and skipped (duplicate results of a turn: the first
    one counts, as for apply_reply).
    """

    folder: Path
    info: RunInfo
    pairs: list[TurnPair]
    notes: list[str] = field(default_factory=list)

    @property
    def turns(self) -> int:
        """Number of turns (pairs)."""
        return len(self.pairs)

    @property
    def compared(self) -> int:
        """Turns with both sides present."""
        return sum(1 for p in self.pairs if p.complete)

    @property
    def changed(self) -> int:
        """Turns whose replayed reply differs from the original one."""
        return sum(1 for p in self.pairs if p.changed)

    def missing(self, side: Side) -> int:
        """Turns without a result on ``side``."""
        return sum(1 for p in self.pairs if p.result(side) is None)

    def one_side_only(self) -> list[tuple[Side, str, int]]:
        """Turns with a result on one side only, by (side missing, reason): the most
        frequent first, then by side and reason."""
        counts: dict[tuple[Side, str], int] = {}
        for pair in self.pairs:
            side = pair.one_side_only
            if side is not None:
                key = (side, pair.reasons.get(side, "unknown"))
                counts[key] = counts.get(key, 0) + 1
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return [(side, reason, n) for (side, reason), n in ordered]

    def totals(self, side: Side, prices: Prices | None = None) -> SideTotals:
        """The :class:`SideTotals` of ``side``, with cost when ``prices`` is given."""
        metrics = [m for m in (p.metrics(side) for p in self.pairs) if m is not None]
        usage = [u for u in self.usage(prices) if u.side == side]
        priced = [u.cost_usd for u in usage if u.cost_usd is not None]
        latencies = [m.latency_ms for m in metrics]
        return SideTotals(
            side=side,
            results=len(metrics),
            missing=self.missing(side),
            fallbacks=sum(1 for m in metrics if m.status == "fallback"),
            failed_calls=sum(m.failed_calls for m in metrics),
            prompt_tokens=sum(m.prompt_tokens for m in metrics),
            completion_tokens=sum(m.completion_tokens for m in metrics),
            total_tokens=sum(m.total_tokens for m in metrics),
            latency_p50_ms=percentile(latencies, 50),
            latency_p95_ms=percentile(latencies, 95),
            cost_usd=sum(priced) if prices is not None and priced else None,
            unpriced=tuple(u.model for u in usage if u.cost_usd is None) if prices else (),
        )

    def usage(self, prices: Prices | None = None) -> list[ModelUsage]:
        """Tokens per side and model (original first, then by model name), priced if possible.

        Calls that are no request (the fallback marker, skipped) do not count as calls; a result
        without calls counts its ``total_tokens`` under model ``"?"``.
        """
        rows: list[ModelUsage] = []
        for side in SIDES:
            sums: dict[str, list[int]] = {}
            for pair in self.pairs:
                result = pair.result(side)
                if result is None:
                    continue
                if not result.calls:
                    if result.total_tokens:
                        sums.setdefault("?", [0, 0, 0, 0])[3] += result.total_tokens
                    continue
                for call in result.calls:
                    entry = sums.setdefault(call.model or "?", [0, 0, 0, 0])
                    entry[0] += call.status not in _NOT_REQUESTS
                    entry[1] += call.prompt_tokens
                    entry[2] += call.completion_tokens
                    entry[3] += call.total_tokens
            for model in sorted(sums):
                n, prompt, completion, total = sums[model]
                if n == 0 and total == 0:
                    continue  # only fallback markers: no request went to this model
                rows.append(
                    ModelUsage(
                        side,
                        model,
                        n,
                        prompt,
                        completion,
                        total,
                        _cost(prices, model, prompt, completion),
                    )
                )
        return rows


def _cost(prices: Prices | None, model: str, prompt: int, completion: int) -> float | None:
    if prices is None or model not in prices:
        return None
    per_prompt, per_completion = prices[model]
    return (prompt * per_prompt + completion * per_completion) / 1_000_000


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``pct`` % of values <= it.

    ``None`` for no values. ``percentile([10, 20, 30, 40], 50) == 20``; p95 of 20 values is the
    19th smallest.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _read_jsonl(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line


def _load_results(path: Path, notes: list[str]) -> dict[str, LLMResult]:
    results: dict[str, LLMResult] = {}
    if not path.exists():
        notes.append(f"{path.name} is absent: every turn misses that side")
        return results
    duplicates = 0
    for number, line in _read_jsonl(path):
        try:
            result = LLMResult.model_validate_json(line)
        except ValidationError as exc:
            raise ValueError(f"{path}:{number}: not an LLMResult: {exc}") from exc
        if result.turn.turn_id in results:
            duplicates += 1
            continue
        results[result.turn.turn_id] = result
    if duplicates:
        notes.append(
            f"{path.name}: {duplicates} duplicate result(s) of a turn ignored (first kept)"
        )
    return results


def load_run(folder: Path) -> RunData:
    """Load the run folder ``folder`` and pair the results of both sides by turn id.

    Pairs follow ``turns.jsonl``; results for turns not in it follow, in the order they first
    appear (original, then replayed). Raises ``FileNotFoundError`` without ``run.json`` or
    ``turns.jsonl`` and ``ValueError`` (naming file and line) for a record that does not parse.
    An absent ``original.jsonl``/``replayed.jsonl`` is read as empty (and noted).
    """
    folder = Path(folder)
    run_path = folder / RUN_FILE
    try:
        info = RunInfo.model_validate_json(run_path.read_bytes())
    except ValidationError as exc:
        raise ValueError(f"{run_path}: not a replay run.json: {exc}") from exc
    notes: list[str] = []
    turns: list[Turn] = []
    seen: set[str] = set()
    for number, line in _read_jsonl(folder / TURNS_FILE):
        try:
            turn = Turn.model_validate_json(line)
        except ValidationError as exc:
            raise ValueError(f"{folder / TURNS_FILE}:{number}: not a Turn: {exc}") from exc
        if turn.turn_id in seen:
            notes.append(f"{TURNS_FILE}:{number}: turn {turn.turn_id} repeated, ignored")
            continue
        seen.add(turn.turn_id)
        turns.append(turn)
    original = _load_results(folder / RESULT_FILES["original"], notes)
    replayed = _load_results(folder / RESULT_FILES["replayed"], notes)
    evidence = load_evidence(folder, turns)
    evidence.add_turns("original", (result.turn for result in original.values()))
    evidence.add_turns("replayed", (result.turn for result in replayed.values()))

    def pair(turn: Turn, in_turns: bool = True) -> TurnPair:
        sides = {"original": original.get(turn.turn_id), "replayed": replayed.get(turn.turn_id)}
        reasons: dict[Side, str] = {
            side: missing_reason(turn, side, evidence) for side in SIDES if sides[side] is None
        }
        return TurnPair(turn, sides["original"], sides["replayed"], in_turns, reasons)

    pairs = [pair(t) for t in turns]
    extra = 0
    for results in (original, replayed):
        for turn_id, result in results.items():
            if turn_id not in seen:
                seen.add(turn_id)
                extra += 1
                pairs.append(pair(result.turn, in_turns=False))
    if extra:
        notes.append(f"{extra} result turn(s) not in {TURNS_FILE}: listed last")
    return RunData(folder=folder, info=info, pairs=pairs, notes=notes)


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _int(value: int) -> str:
    return f"{value:,}"


def _delta(new: float | None, old: float | None, unit: str = "") -> str:
    if new is None or old is None:
        return "n/a"
    diff = round(new - old)
    if diff == 0:
        return f"0{unit}"
    return f"{diff:+,}{unit}"


def _usd(value: float | None) -> str:
    if value is None:
        return "no price"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def _arrow(original: str, replayed: str) -> str:
    return f"{original} → {replayed}"


def summary_line(run: RunData) -> str:
    """One line for the terminal, e.g.

    ``replay 20261129-a: 8 turns, 3 changed (7 compared), missing 0/1, fallbacks 0 → 1,
    p50 latency 812 ms → 640 ms``
    """
    o, r = run.totals("original"), run.totals("replayed")
    return (
        f"replay {run.info.run_id}: {run.turns} turns, {run.changed} changed "
        f"({run.compared} compared), missing {o.missing}/{r.missing}, "
        f"fallbacks {o.fallbacks} → {r.fallbacks}, "
        f"p50 latency {_ms(o.latency_p50_ms)} → {_ms(r.latency_p50_ms)}"
    )


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


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
        ["results", _int(o.results), _int(r.results), _delta(r.results, o.results)],
        ["missing", _int(o.missing), _int(r.missing), _delta(r.missing, o.missing)],
        ["fallbacks", _int(o.fallbacks), _int(r.fallbacks), _delta(r.fallbacks, o.fallbacks)],
        [
            "errors (calls error/retry)",
            _int(o.failed_calls),
            _int(r.failed_calls),
            _delta(r.failed_calls, o.failed_calls),
        ],
        [
            "latency p50",
            _ms(o.latency_p50_ms),
            _ms(r.latency_p50_ms),
            _delta(r.latency_p50_ms, o.latency_p50_ms, " ms"),
        ],
        [
            "latency p95",
            _ms(o.latency_p95_ms),
            _ms(r.latency_p95_ms),
            _delta(r.latency_p95_ms, o.latency_p95_ms, " ms"),
        ],
        [
            "prompt tokens",
            _int(o.prompt_tokens),
            _int(r.prompt_tokens),
            _delta(r.prompt_tokens, o.prompt_tokens),
        ],
        [
            "completion tokens",
            _int(o.completion_tokens),
            _int(r.completion_tokens),
            _delta(r.completion_tokens, o.completion_tokens),
        ],
        [
            "total tokens",
            _int(o.total_tokens),
            _int(r.total_tokens),
            _delta(r.total_tokens, o.total_tokens),
        ],
    ]
    if prices is not None:
        rows.append(["estimated cost", _side_cost(o), _side_cost(r), ""])
    return rows


def _side_cost(totals: SideTotals) -> str:
    if totals.cost_usd is None:
        return "no price" if totals.unpriced else _usd(0.0)
    text = _usd(totals.cost_usd)
    return text + (" + no price for " + ", ".join(totals.unpriced) if totals.unpriced else "")


def _usage_rows(run: RunData, prices: Prices | None) -> list[list[str]]:
    return [
        [
            u.side,
            _md(u.model),
            _int(u.calls),
            _int(u.prompt_tokens),
            _int(u.completion_tokens),
            _int(u.total_tokens),
            _usd(u.cost_usd) if prices is not None else "no price table",
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
        f"- inbound records: {_int(info.counts.inbound_records)}",
        f"- operator controls: {_int(info.counts.controls)}",
        f"- dead letters: {_int(info.counts.dead_letters)}",
        "- skipped decisions: "
        + (
            ", ".join(f"{_md(k)}: {_int(v)}" for k, v in sorted(info.counts.skipped.items()))
            or "none"
        ),
        "",
        "## Totals",
        "",
    ]
    out += _md_table(
        ["", "count"],
        [
            ["turns", _int(run.turns)],
            ["compared (both sides)", _int(run.compared)],
            ["changed replies", _int(run.changed)],
            ["missing original", _int(o.missing)],
            ["missing replayed", _int(r.missing)],
        ],
    )
    one_side = run.one_side_only()
    if one_side:
        out += ["", "## One side only", ""]
        out += _md_table(
            ["", "why", "turns"],
            [[f"no {side} result", _md(reason), _int(n)] for side, reason, n in one_side],
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
            return f"{_ms(m.latency_ms)} (no ok call)"
        if round(m.ok_latency_ms) == round(m.latency_ms):
            return _ms(m.latency_ms)
        return f"{_ms(m.latency_ms)} (ok call {_ms(m.ok_latency_ms)})"

    def tok(m: SideMetrics) -> str:
        return f"{_int(m.total_tokens)} ({_int(m.prompt_tokens)} + {_int(m.completion_tokens)})"

    def both(get: str) -> tuple[float | None, float | None]:
        return (
            None if mo is None else float(getattr(mo, get)),
            None if mr is None else float(getattr(mr, get)),
        )

    rows = [
        ["reply", cell(mo, _md(mo.reply) if mo else ""), cell(mr, _md(mr.reply) if mr else ""), ""],
        [
            "chars",
            cell(mo, _int(mo.chars) if mo else ""),
            cell(mr, _int(mr.chars) if mr else ""),
            _delta(both("chars")[1], both("chars")[0]),
        ],
        [
            "latency",
            cell(mo, lat(mo) if mo else ""),
            cell(mr, lat(mr) if mr else ""),
            _delta(both("latency_ms")[1], both("latency_ms")[0], " ms"),
        ],
        [
            "tokens",
            cell(mo, tok(mo) if mo else ""),
            cell(mr, tok(mr) if mr else ""),
            _delta(both("total_tokens")[1], both("total_tokens")[0]),
        ],
        ["model", cell(mo, _md(mo.model) if mo else ""), cell(mr, _md(mr.model) if mr else ""), ""],
        ["status", cell(mo, mo.status if mo else ""), cell(mr, mr.status if mr else ""), ""],
    ]
    return [*lines, *_md_table(["", "original", "replayed", "delta"], rows), ""]


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


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
    text = _delta(new, old, unit)
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
        show = _ms if fmt == "ms" else (lambda v: "n/a" if v is None else _int(int(v)))
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
        rows.append(["estimated cost", _h(_side_cost(o)), _h(_side_cost(r)), ""])
    return _html_num_table(["by side", "original", "replayed", "delta"], rows)


def _html_usage_table(run: RunData, prices: Prices | None) -> str:
    usage = run.usage(prices)
    if not usage:
        return '<p class="notes">No LLM calls.</p>'
    rows = [
        [
            _h(u.side),
            f'<span class="mono">{_h(u.model)}</span>',
            _int(u.calls),
            _int(u.prompt_tokens),
            _int(u.completion_tokens),
            _int(u.total_tokens),
            _h(_usd(u.cost_usd))
            if prices is not None
            else '<span class="na">no price table</span>',
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
    latency = f"<b>{_h(_ms(m.latency_ms))}</b>" + d(
        m.latency_ms, other.latency_ms if other else None, " ms"
    )
    if ok is None:
        latency += ", no ok call"
    elif round(ok) != round(m.latency_ms):
        latency += f", ok call {_h(_ms(ok))}"
    status_cls = "b-bad" if m.status == "fallback" else "b-same"
    parts = [
        f'<span class="badge {status_cls}">{_h(m.status)}</span>',
        f'<span class="mono" title="model">{_h(m.model)}</span>',
        f"<span><b>{_int(m.chars)}</b> chars"
        + d(m.chars, other.chars if other else None, judge=False)
        + "</span>",
        f"<span>{latency}</span>",
        f'<span title="{_int(m.prompt_tokens)} prompt + {_int(m.completion_tokens)} completion">'
        f"<b>{_int(m.total_tokens)}</b> tokens"
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
        ", ".join(f"{_h(k)}: {_int(v)}" for k, v in sorted(info.counts.skipped.items()))
        or '<span class="na">none</span>'
    )
    meta = [
        ("selection", _h(info.selection) or '<span class="na">n/a</span>'),
        ("context", _h(info.context)),
        ("overrides", overrides),
        ("source app", _h(info.source_app) or '<span class="na">n/a</span>'),
        ("created", _h(info.created_at.isoformat(timespec="seconds"))),
        ("inbound records", _int(info.counts.inbound_records)),
        ("operator controls", _int(info.counts.controls)),
        ("dead letters", _int(info.counts.dead_letters)),
        ("skipped decisions", skipped),
    ]

    def card(key: str, value: str, extra: str = "", cls: str = "") -> str:
        return (
            f'<div class="card {cls}" data-total="{_h(key)}"><div class="k">{_h(key)}</div>'
            f'<div class="v">{value}{extra}</div></div>'
        )

    cards = [
        card("turns", _int(run.turns)),
        card(
            "changed replies",
            _int(run.changed),
            f" <small>of {_int(run.compared)} compared</small>",
            "chg" if run.changed else "",
        ),
        card("missing sides", f"{o.missing} / {r.missing}", " <small>orig / replay</small>"),
        card("fallbacks", _h(_arrow(_int(o.fallbacks), _int(r.fallbacks)))),
        card(
            "errors",
            _h(_arrow(_int(o.failed_calls), _int(r.failed_calls))),
            " <small>error/retry calls</small>",
        ),
        card("latency p50", _h(_arrow(_ms(o.latency_p50_ms), _ms(r.latency_p50_ms)))),
        card("latency p95", _h(_arrow(_ms(o.latency_p95_ms), _ms(r.latency_p95_ms)))),
    ]
    if prices is not None:
        cards.append(card("est. cost", _h(_arrow(_side_cost(o), _side_cost(r)))))
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
                [f"no {_h(side)} result", f'<span class="why">{_h(reason)}</span>', _int(n)]
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
        f'<p class="sub">original (live bot) vs replayed · {_int(run.turns)} turns</p>',
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


def write_report(folder: Path, prices: Prices | None = None) -> tuple[Path, Path]:
    """Load the run in ``folder`` and write ``report.md`` and ``report.html`` into it.

    ``prices``: model -> (USD per 1,000,000 prompt tokens, USD per 1,000,000 completion tokens);
    without it no cost is shown, and a model missing from it shows "no price". Returns
    ``(md_path, html_path)``.
    """
    folder = Path(folder)
    run = load_run(folder)
    md_path, html_path = folder / REPORT_MD, folder / REPORT_HTML
    md_path.write_text(render_markdown(run, prices), encoding="utf-8")
    html_path.write_text(render_html(run, prices), encoding="utf-8")
    return md_path, html_path
