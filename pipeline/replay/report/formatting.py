"""Numbers as the report shows them (milliseconds, counts, deltas, USD), shared by the Markdown
and the HTML rendering, and :func:`summary_line`, the one line a terminal shows after a replay."""

from __future__ import annotations

from pipeline.replay.report.data import RunData, SideTotals

__all__ = ["arrow", "count", "delta", "ms", "side_cost", "summary_line", "usd"]


def ms(value: float | None) -> str:
    """``1,234 ms``; ``n/a`` for no value."""
    return "n/a" if value is None else f"{value:,.0f} ms"


def count(value: int) -> str:
    """An integer with thousands separators."""
    return f"{value:,}"


def delta(new: float | None, old: float | None, unit: str = "") -> str:
    """``new - old`` rounded and signed (``+12 ms``, ``-3``, ``0``); ``n/a`` without both."""
    if new is None or old is None:
        return "n/a"
    diff = round(new - old)
    if diff == 0:
        return f"0{unit}"
    return f"{diff:+,}{unit}"


def usd(value: float | None) -> str:
    """Dollars, with more digits the smaller the amount; ``no price`` for no value."""
    if value is None:
        return "no price"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def arrow(original: str, replayed: str) -> str:
    """``original → replayed``."""
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
        f"p50 latency {ms(o.latency_p50_ms)} → {ms(r.latency_p50_ms)}"
    )


def side_cost(totals: SideTotals) -> str:
    """The estimated cost of one side, naming the models without a price."""
    if totals.cost_usd is None:
        return "no price" if totals.unpriced else usd(0.0)
    text = usd(totals.cost_usd)
    return text + (" + no price for " + ", ".join(totals.unpriced) if totals.unpriced else "")
