"""``/api/stats``: the dashboard's numbers."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.api.models import Stats
from pipeline.api.routes.context import Ctx

__all__ = ["stats"]


async def stats(ctx: Ctx) -> Stats:
    """The dashboard's numbers (see the response schema)."""
    numbers = await ctx.store.stats(datetime.now(UTC))
    gateways = await ctx.store.gateway_states()
    return Stats(
        **numbers,
        dlq={"count": await ctx.tail.dlq_count(), "latest": list(ctx.tail.dead_letters)[::-1]},
        gateway_state=gateways[0].state if gateways else None,
    )
