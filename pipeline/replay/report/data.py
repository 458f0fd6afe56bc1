"""The report's numbers: a run's turns paired by side, and what is counted over them.

:class:`RunInfo` is ``run.json``; :class:`RunData` is a loaded run (one :class:`TurnPair` per
turn) with its totals (:class:`SideTotals`) and tokens and cost by model (:class:`ModelUsage`);
:class:`SideMetrics` are the numbers of one side of one turn. Latency in milliseconds, lengths in
characters, tokens as the LLM endpoint counted them, cost in USD from a price table
(:data:`Prices`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.replay.reasons import Side
from schemas import LLMResult, Turn

__all__ = [
    "FAILED_CALL_STATUSES",
    "SIDES",
    "ModelUsage",
    "Prices",
    "RunCounts",
    "RunData",
    "RunInfo",
    "SideMetrics",
    "SideTotals",
    "TurnPair",
    "percentile",
]

SIDES: tuple[Side, Side] = ("original", "replayed")

#: model name -> (USD per 1,000,000 prompt tokens, USD per 1,000,000 completion tokens).
Prices = Mapping[str, tuple[float, float]]

#: LLM call statuses counted as errors of a side: a refused call and an attempt that was retried.
FAILED_CALL_STATUSES: frozenset[str] = frozenset({"error", "retry"})
#: Call records that are no request to the endpoint (the fallback marker, a skipped call).
_NOT_REQUESTS: frozenset[str] = frozenset({"fallback", "skipped"})


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
