"""``python -m pipeline.dev.standin``: the stand-in in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

from pipeline.dev.servers import serve_until_stopped
from pipeline.dev.standin.config import StandinConfig
from pipeline.dev.standin.providers import PROVIDERS
from pipeline.dev.standin.server import LLMStandin

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.dev.standin``: serve in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.dev.standin",
        description="A local OpenAI-compatible chat-completions server that echoes its prompts.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--prefix", default="echo", help="reply prefix")
    parser.add_argument(
        "--context-tokens", type=int, default=None, help="context window, estimated tokens"
    )
    parser.add_argument(
        "--provider", default="openai", choices=sorted(PROVIDERS), help="over-long error flavour"
    )
    args = parser.parse_args(argv)
    config = StandinConfig(
        latency_s=args.latency,
        reply_prefix=args.prefix,
        context_tokens=args.context_tokens,
        provider=args.provider,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_until_stopped(
                LLMStandin(config), args.host, args.port, lambda url: print(url, flush=True)
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
