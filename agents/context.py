"""Per-task context shared by all agents (not an agent itself).

``trace_id_var`` holds the trace_id of the record a task is processing; the log filter
in pipeline.observability.logs reads it, so every line logged during that work carries the id.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")


@contextlib.contextmanager
def traced(trace_id: str) -> Iterator[None]:
    """Run the block with ``trace_id`` as the current trace."""
    token = trace_id_var.set(trace_id)
    try:
        yield
    finally:
        trace_id_var.reset(token)
