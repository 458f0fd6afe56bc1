"""The worker's LLM as agents see it: wired before the client exists, counted in metrics."""

from __future__ import annotations

from typing import Any

from pipeline.llm.client import LLMClient
from pipeline.observability.pipeline_metrics import (
    PipelineMetrics,
)


class LLMProxy:
    """Lets agents be wired before the LLM client exists (it starts with the worker)."""

    client: LLMClient | None = None
    metrics: PipelineMetrics | None = None

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        turn_id: str,
        chat_id: str,
        trace_id: str,
        model: str | None = None,
        cut_before: int = 0,
    ) -> Any:
        if self.client is None:
            raise RuntimeError("the LLM client is not started yet")
        completion = await self.client.complete(
            messages,
            turn_id=turn_id,
            chat_id=chat_id,
            trace_id=trace_id,
            model=model,
            cut_before=cut_before,
        )
        if self.metrics is not None:
            self.metrics.llm_calls(completion.calls)
        return completion
