"""How the stand-in behaves when it starts (:class:`StandinConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.dev.standin.failures import Failure
from pipeline.dev.standin.providers import Provider, check_context

__all__ = ["StandinConfig"]


@dataclass
class StandinConfig:
    """How the stand-in behaves when it starts; the admin endpoint can change it at runtime.

    ``hang_max_s`` bounds a ``hang`` so a forgotten one cannot hold a socket forever; shutdown
    cuts it short anyway.

    ``context_tokens`` is the model's context window in :func:`estimate_tokens` (``None``: no
    limit); a prompt that does not fit is refused as ``provider`` refuses it (:data:`PROVIDERS`),
    with ``context_status`` instead of the provider's status when set (413, as some proxies and
    proposed vLLM versions answer).
    """

    latency_s: float = 0.0
    reply_prefix: str = "echo"
    failures: list[Failure] = field(default_factory=list)
    hang_max_s: float = 300.0
    context_tokens: int | None = None
    provider: Provider = "openai"
    context_status: int | None = None

    def __post_init__(self) -> None:
        check_context(self.context_tokens, self.provider, self.context_status)
