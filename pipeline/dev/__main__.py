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

from pipeline import get_app, settings_or_exit
from pipeline.api.tokens import token_file
from pipeline.config.settings import Settings
from pipeline.dev.servers import ThreadedServer

PROG = "python -m pipeline.dev"
#: Where, in the data folder, the stand-in's URL is kept while it runs.
STANDIN_URL_FILE = "llm-standin-url"


def start_servers() -> list[ThreadedServer]:  # type: ignore[type-arg]
    """Start what the settings leave to the embedded defaults and put their URLs in this
    process's environment, where the worker's settings read them. Exits 2 on a taken port."""
    settings = settings_or_exit(PROG)
    started: list[ThreadedServer] = []  # type: ignore[type-arg]
    if not settings.llm_base_url:
        from pipeline.dev.standin.threaded import ThreadedStandin

        standin = ThreadedStandin()
        url = standin.start("127.0.0.1", 0)
        started.append(standin)
        os.environ["WABOT_LLM_BASE_URL"] = url
        # For commands run beside it (a replay): `--set llm_base_url="$(cat ...)"`.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / STANDIN_URL_FILE).write_text(url + "\n")
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
    return started


def ready_block(settings: Settings, standin: bool, ready_after: float | None) -> str:
    """What a person opens next, printed once when the worker is ready: a few aligned lines
    (the phone page, the dashboard and where its token is, the LLM, the broker, how to stop)."""
    rows: list[tuple[str, str]] = []
    if settings.gateway_lookalike:
        base = settings.gateway_url.rstrip("/")
        rows.append(("chat as a customer", f"{base}/phone  (press Scan QR there first)"))
    if settings.api_in_worker:
        where = (
            "a secret of WABOT_API_TOKENS"
            if settings.api_tokens
            else f"token in {token_file(settings)}"
        )
        rows.append(
            (
                "operator dashboard",
                f"http://{settings.web_host}:{settings.api_port}/dashboard  ({where})",
            )
        )
    rows.append(
        (
            "LLM",
            f"the built-in stand-in at {settings.llm_base_url}, which echoes the prompt "
            "(set WABOT_LLM_BASE_URL, WABOT_LLM_MODEL, WABOT_LLM_API_KEY for a real model)"
            if standin
            else f"{settings.llm_model} at {settings.llm_base_url}",
        )
    )
    rows.append(("broker", settings.broker_url))
    rows.append(("stop", "Ctrl-C (the broker keeps running until `make stop`)"))
    took = f" in {ready_after:.1f}s" if ready_after is not None else ""
    width = max(len(label) for label, _ in rows)
    lines = [f"wabot is ready{took}", *(f"  {label:<{width}}  {text}" for label, text in rows)]
    return "\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    standin = not os.environ.get("WABOT_LLM_BASE_URL") and not settings_or_exit(PROG).llm_base_url
    servers = start_servers()
    from faust.cli.faust import cli

    app = get_app()
    app.ready_hooks.append(
        # Faust redirects sys.stderr into its log while it runs: write to the terminal itself.
        lambda: print(
            ready_block(app.settings, standin, app.ready_after), file=sys.__stderr__, flush=True
        )
    )
    try:
        # -q: no Faust banner table; the ready block says what to open.
        cli.main(args=["-A", "pipeline", "-q", "worker", *(argv or [])], prog_name="faust")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):  # the process ends anyway
                server.stop(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
