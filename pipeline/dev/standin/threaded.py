"""The stand-in on its own thread and event loop (:class:`ThreadedStandin`), for synchronous
callers: tests, benchmarks and ``python -m pipeline.dev``."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.dev.servers import ThreadedServer
from pipeline.dev.standin.config import StandinConfig
from pipeline.dev.standin.failures import Failure
from pipeline.dev.standin.server import LLMStandin
from pipeline.dev.standin.stats import StandinStats

__all__ = ["ThreadedStandin", "run_in_thread"]


class ThreadedStandin(ThreadedServer[LLMStandin]):
    """An :class:`LLMStandin` on its own thread and event loop, for synchronous callers."""

    def __init__(self, config: StandinConfig | None = None) -> None:
        super().__init__(LLMStandin(config), name="llm-standin")

    @property
    def stats(self) -> StandinStats:
        """A snapshot taken on the server's loop."""
        return self.run(lambda: self.server.stats)

    def set_failures(
        self,
        failures: Iterable[Failure],
        *,
        latency_s: float | None = None,
        reply_prefix: str | None = None,
    ) -> None:
        """See :meth:`LLMStandin.set_failures`."""
        failures = list(failures)
        self.run(
            lambda: self.server.set_failures(
                failures, latency_s=latency_s, reply_prefix=reply_prefix
            )
        )

    def set_context(
        self, context_tokens: int | None, provider: str = "openai", status: int | None = None
    ) -> None:
        """See :meth:`LLMStandin.set_context`."""
        self.run(lambda: self.server.set_context(context_tokens, provider, status))

    def reset(self) -> None:
        """See :meth:`LLMStandin.reset`."""
        self.run(self.server.reset)


def run_in_thread(
    config: StandinConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> ThreadedStandin:
    """Starts a stand-in on a background thread; call ``.stop()`` (or use ``with``) when done."""
    server = ThreadedStandin(config)
    server.start(host, port)
    return server
