"""``python -m pipeline.dev [faust worker options]``: the bot on its embedded defaults.

What ``make dev`` runs: the LLM stand-in (unless ``WABOT_LLM_BASE_URL`` names a real
endpoint) and, with ``WABOT_GATEWAY_LOOKALIKE=true``, the WhatsApp look-alike on
``WABOT_LOOKALIKE_PORT`` (its world and login kept in ``<WABOT_DATA_DIR>/lookalike/world.json``),
each on a thread of this process; then ``faust -A pipeline worker``
in the foreground, handed their URLs (``WABOT_LLM_BASE_URL``, ``WABOT_GATEWAY_URL``) as any
real endpoint would be. The worker itself never imports this package.

Exit codes: the worker's; 2 when a port is taken or a setting is invalid (one line).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from pipeline import settings_or_exit
from pipeline.dev.servers import ThreadedServer

PROG = "python -m pipeline.dev"


def start_servers() -> list[ThreadedServer]:  # type: ignore[type-arg]
    """Start what the settings leave to the embedded defaults and put their URLs in this
    process's environment, where the worker's settings read them. Exits 2 on a taken port."""
    settings = settings_or_exit(PROG)
    started: list[ThreadedServer] = []  # type: ignore[type-arg]
    if not settings.llm_base_url:
        from pipeline.dev.standin import ThreadedStandin

        standin = ThreadedStandin()
        url = standin.start("127.0.0.1", 0)
        started.append(standin)
        os.environ["WABOT_LLM_BASE_URL"] = url
        print(
            f"{PROG}: no LLM configured (WABOT_LLM_BASE_URL is empty): replies come from the "
            f"built-in stand-in at {url}, which echoes the prompt; set WABOT_LLM_BASE_URL, "
            "WABOT_LLM_MODEL and WABOT_LLM_API_KEY for a real model",
            file=sys.stderr,
        )
    if settings.gateway_lookalike:
        from pipeline.dev.lookalike.server import LookalikeConfig, ThreadedLookalike

        # Its chats and its login outlive a restart, as the bot's tables and profile do.
        state = settings.data_dir / "lookalike" / "world.json"
        lookalike = ThreadedLookalike(LookalikeConfig(state_file=state))
        try:
            base = lookalike.start("127.0.0.1", settings.lookalike_port)
        except OSError as exc:
            for server in started:
                server.stop()
            print(
                f"{PROG}: cannot serve the look-alike on port {settings.lookalike_port} "
                f"({exc.strerror or exc}); is another `make dev` running? Stop it, or set "
                "WABOT_LOOKALIKE_PORT to a free port",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        started.append(lookalike)
        os.environ["WABOT_GATEWAY_URL"] = base + "/"
        print(
            f"{PROG}: WhatsApp look-alike at {base}: open {base}/phone to write to the bot as "
            "a customer (press 'Scan QR' there to link the bot first)",
            file=sys.stderr,
        )
    return started


def main(argv: Sequence[str] | None = None) -> int:
    servers = start_servers()
    from faust.cli.faust import cli

    try:
        cli.main(args=["-A", "pipeline", "worker", *(argv or [])], prog_name="faust")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):  # the process ends anyway
                server.stop(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
