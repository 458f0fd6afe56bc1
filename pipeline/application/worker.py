"""The worker process: log level from the settings, ports checked before start, a stop
that always ends (``faust -A pipeline worker`` and ``faust -A pipeline.gateway worker``)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

import faust

from pipeline.api.tokens import api_tokens
from pipeline.config.settings import Settings

log = logging.getLogger(__name__)


class PipelineWorker(faust.Worker):
    """faust.Worker whose log level comes from WABOT_LOG_LEVEL, not only from ``-l``,
    and whose stop always ends.

    Faust's terminal spinner raises the log handler to WARN when ``-l`` is not given,
    which would hide the "worker ready" line; our log lines are the progress report.

    Stopping flushes the producer and commits offsets; with the broker gone, Faust and
    aiokafka wait for it forever and Ctrl-C seemed to do nothing. A watchdog thread (it
    runs even when the event loop is stuck) ends the process ``shutdown_timeout_s`` after
    the first signal, and a second Ctrl-C ends it at once. Ending early is safe by design:
    anything not committed is replayed on restart and the sink skips what it already sent.
    """

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        if app.llm is not None and not app.settings.llm_base_url:
            print(
                "wabot: WABOT_LLM_BASE_URL is empty: set it to an OpenAI-compatible endpoint "
                "(with WABOT_LLM_MODEL and WABOT_LLM_API_KEY), or run `make dev`, which starts "
                "the built-in stand-in and hands it to the worker",
                file=sys.stderr,
            )
            raise SystemExit(2)
        _exit_if_ports_taken(app.settings, app.conf.web_port)
        api_tokens(app.settings)  # made now, so its file is there before the first request
        super().__init__(app, *args, **kwargs)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if self._signal_stop_time:
            _end_now(f"second {signum.name}: stopping without waiting for a clean shutdown")
        settings: Settings = self.app.settings  # type: ignore[attr-defined]
        watchdog = threading.Timer(
            settings.shutdown_timeout_s,
            _end_now,
            args=(
                f"the worker did not stop within {settings.shutdown_timeout_s:g}s "
                f"(is the broker at {', '.join(settings.bootstrap_servers)} reachable?); exiting "
                "without a clean shutdown: unfinished records are replayed on restart",
            ),
        )
        watchdog.daemon = True
        watchdog.start()
        super()._schedule_shutdown(signum)


def _exit_if_ports_taken(settings: Settings, web_port: int) -> None:
    """Exit 2 with one line when a port the worker must listen on is taken (another worker,
    say): Faust would die with a traceback from deep inside aiohttp."""
    name = "WABOT_WEB_PORT" if web_port == settings.web_port else "WABOT_GATEWAY_WEB_PORT"
    ports = [(web_port, name)]
    if settings.api_in_worker and web_port == settings.web_port:
        ports.append((settings.api_port, "WABOT_API_PORT"))
    for port, name in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.web_host, port))
            except OSError:
                print(
                    f"wabot: port {port} ({name}) on {settings.web_host} is in use; is another "
                    f"worker running? Stop it, or set {name} to a free port",
                    file=sys.stderr,
                )
                raise SystemExit(2) from None


def _end_now(reason: str) -> None:
    log.error("%s", reason)
    logging.shutdown()
    os._exit(1)
