"""The stand-in's HTTP server (:class:`LLMStandin`) on the caller's event loop: its routes
(``/v1/chat/completions``, ``/v1/models``, ``/admin/*``), their handlers, the runtime controls
the admin routes reach, and its start and stop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter, deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from pipeline.dev.standin.config import StandinConfig
from pipeline.dev.standin.failures import INVISIBLE_REPLY, MAX_QUEUED_FAILURES, Failure
from pipeline.dev.standin.protocol import (
    InvalidRequest,
    Prompt,
    completion,
    error_body,
    invalid,
    is_number,
    json_response,
    parse_completion_request,
    retry_after_header,
)
from pipeline.dev.standin.providers import check_context, ollama_keep, too_long
from pipeline.dev.standin.replies import reply_for
from pipeline.dev.standin.stats import HISTORY, StandinStats

__all__ = ["MODEL_ID", "LLMStandin"]

MODEL_ID = "standin-1"
"""The one model ``GET /v1/models`` lists; requests may name any model, it is echoed back."""


def _format_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


class LLMStandin:
    """The stand-in server, run on the caller's event loop.

    ``start()`` binds the socket itself so ``port=0`` yields a free port that is known before the
    first request; ``stop()`` cuts every pending latency sleep and hang short so shutdown never
    waits on a scripted failure.
    """

    def __init__(self, config: StandinConfig | None = None) -> None:
        self._config = config if config is not None else StandinConfig()
        self._latency_s = self._config.latency_s
        self._prefix = self._config.reply_prefix
        self._context_tokens = self._config.context_tokens
        self._provider: str = self._config.provider
        self._context_status = self._config.context_status
        self._failures: deque[Failure] = deque()
        self._queue_failures(self._config.failures)
        self._requests = 0
        self._by_status: Counter[str] = Counter()
        self._messages: deque[list[Any]] = deque(maxlen=HISTORY)
        self._max_tokens: deque[int | None] = deque(maxlen=HISTORY)
        self._in_flight = 0
        self._max_in_flight = 0
        self._sleeping: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Starts listening and returns the base URL to hand to an OpenAI client."""
        if self._runner is not None:
            raise RuntimeError("the LLM stand-in is already started")
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/admin/failures", self._admin_failures)
        app.router.add_post("/admin/context", self._admin_context)
        app.router.add_get("/admin/stats", self._admin_stats)
        app.router.add_post("/admin/reset", self._admin_reset)
        # handler_cancellation: a client that gave up (timeout during a hang) frees its handler at
        # once instead of leaving a sleeper behind. No access log: it would dominate at 2k req/s.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=5.0
        )
        await runner.setup()
        family, type_, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
            0
        ]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            # A deep backlog so a benchmark opening a thousand connections at once is not refused.
            site = web.SockSite(runner, sock, backlog=4096)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self._closing = False
        bound_host, bound_port = sock.getsockname()[:2]
        self._base_url = _format_url(str(bound_host), int(bound_port))
        return self._base_url

    async def stop(self) -> None:
        """Stops listening, cancels pending sleeps and hangs, and closes every connection."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for task in list(self._sleeping):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``, what ``openai.AsyncOpenAI(base_url=...)`` expects."""
        if self._base_url is None:
            raise RuntimeError("the LLM stand-in has not been started")
        return self._base_url

    @property
    def stats(self) -> StandinStats:
        """A snapshot, so callers can compare before and after without aliasing live state."""
        return StandinStats(
            requests=self._requests,
            by_status=dict(self._by_status),
            messages=list(self._messages),
            max_tokens=list(self._max_tokens),
            pending_failures=len(self._failures),
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            latency_s=self._latency_s,
        )

    # -- runtime control (also reachable over HTTP) ------------------------------------------

    def set_failures(
        self,
        failures: Iterable[Failure],
        *,
        latency_s: float | None = None,
        reply_prefix: str | None = None,
    ) -> None:
        """Replaces the failure script (and optionally latency and prefix) for later requests."""
        if latency_s is not None and latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        failures = list(failures)
        self._failures.clear()
        self._queue_failures(failures)
        if latency_s is not None:
            self._latency_s = latency_s
        if reply_prefix is not None:
            self._prefix = reply_prefix

    def set_context(
        self, context_tokens: int | None, provider: str = "openai", status: int | None = None
    ) -> None:
        """Sets the context window (estimated tokens, ``None``: none), whose refusal to copy, and
        an optional status replacing the provider's (see :class:`StandinConfig`)."""
        check_context(context_tokens, provider, status)
        self._context_tokens = context_tokens
        self._provider = provider
        self._context_status = status

    def reset(self) -> None:
        """Forgets the stats and the failure script; latency, prefix and context return to the
        config's."""
        self._failures.clear()
        self._latency_s = self._config.latency_s
        self._prefix = self._config.reply_prefix
        self._context_tokens = self._config.context_tokens
        self._provider = self._config.provider
        self._context_status = self._config.context_status
        self._requests = 0
        self._by_status.clear()
        self._messages.clear()
        self._max_tokens.clear()
        self._max_in_flight = self._in_flight

    def _queue_failures(self, failures: Iterable[Failure]) -> None:
        expanded = [f for failure in failures for f in [failure] * failure.times]
        if len(self._failures) + len(expanded) > MAX_QUEUED_FAILURES:
            raise ValueError(f"at most {MAX_QUEUED_FAILURES} failures can be queued")
        self._failures.extend(expanded)

    # -- handlers ----------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleeps in a way that :meth:`stop` can cut short, without a task per sleeper."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - handlers always run in a task
            await asyncio.sleep(seconds)
            return
        self._sleeping.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._sleeping.discard(task)

    async def _chat_completions(self, request: web.Request) -> web.Response:
        self._requests += 1
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight
        try:
            response = await self._answer(request)
        finally:
            self._in_flight -= 1
        self._by_status[str(response.status)] += 1
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: object = json.loads(raw)
        except ValueError:
            return invalid(
                InvalidRequest(
                    "We could not parse the JSON body of your request. (HINT: This likely means "
                    "you aren't using your HTTP library correctly.)"
                )
            )
        if isinstance(body, dict) and isinstance(body.get("messages"), list):
            self._messages.append(body["messages"])
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            self._max_tokens.append(limit if isinstance(limit, int) else None)
        # Failures come before validation, as a rate limiter or a crashing proxy in front of the
        # model would; they answer at once, without the configured latency.
        if self._failures:
            failure = self._failures.popleft()
            if failure.kind == "429":
                return json_response(
                    error_body(
                        "Rate limit reached for requests (injected by the LLM stand-in).",
                        "requests",
                        code="rate_limit_exceeded",
                    ),
                    429,
                    {"Retry-After": retry_after_header(failure.retry_after)},
                )
            if failure.kind == "500":
                return json_response(
                    error_body(
                        "The server had an error while processing your request "
                        "(injected by the LLM stand-in).",
                        "server_error",
                    ),
                    500,
                )
            if failure.kind in ("empty", "invisible"):
                try:
                    prompt = parse_completion_request(body)
                except InvalidRequest as exc:
                    return invalid(exc)
                reply = "" if failure.kind == "empty" else INVISIBLE_REPLY
                return json_response(completion(prompt, reply))
            self._by_status["hang"] += 1
            await self._sleep(self._config.hang_max_s)
            return json_response(error_body("The injected hang reached its bound.", "timeout"), 504)
        try:
            prompt = parse_completion_request(body)
        except InvalidRequest as exc:
            return invalid(exc)
        if self._context_tokens is not None:
            refusal, prompt = self._fit(prompt, self._context_tokens)
            if refusal is not None:
                return refusal
        try:
            reply = reply_for(prompt, self._prefix)
        except InvalidRequest as exc:
            return invalid(exc)
        if self._latency_s > 0:
            await self._sleep(self._latency_s)
        return json_response(completion(prompt, reply))

    def _fit(self, prompt: Prompt, context: int) -> tuple[web.Response | None, Prompt]:
        """The provider's refusal of a prompt over ``context``, or the prompt the model sees."""
        if self._provider == "ollama":
            keep = ollama_keep(prompt.roles, prompt.texts, context)
            if keep is None:
                body = error_body(
                    "the prompt is longer than the context length currently available to the "
                    "model; shorten the prompt, adjust the context length in settings, or use a "
                    "model with a longer context length",
                    "invalid_request_error",
                )
                return json_response(body, self._context_status or 400), prompt
            return None, Prompt(
                prompt.model,
                [prompt.roles[i] for i in keep],
                [prompt.texts[i] for i in keep],
                prompt.max_tokens,
            )
        refusal = too_long(self._provider, context, prompt.texts, prompt.max_tokens)
        if refusal is None:
            return None, prompt
        return json_response(refusal, self._context_status or 400), prompt

    async def _models(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "wabot"}],
            }
        )

    async def _admin_failures(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            raw_failures = body.get("failures", [])
            if not isinstance(raw_failures, list):
                raise ValueError("'failures' must be an array")
            failures = [Failure.from_json(item) for item in raw_failures]
            latency_s = body.get("latency_s")
            if latency_s is not None and not is_number(latency_s):
                raise ValueError("'latency_s' must be a number of seconds")
            prefix = body.get("reply_prefix")
            if prefix is not None and not isinstance(prefix, str):
                raise ValueError("'reply_prefix' must be a string")
            self.set_failures(
                failures,
                latency_s=None if latency_s is None else float(latency_s),
                reply_prefix=prefix,
            )
        except ValueError as exc:
            return json_response(error_body(str(exc), "invalid_request_error"), 400)
        return json_response(
            {"pending_failures": len(self._failures), "latency_s": self._latency_s}
        )

    async def _admin_context(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            self.set_context(
                body.get("context_tokens"), body.get("provider", "openai"), body.get("status")
            )
        except ValueError as exc:
            return json_response(error_body(str(exc), "invalid_request_error"), 400)
        return json_response(
            {
                "context_tokens": self._context_tokens,
                "provider": self._provider,
                "status": self._context_status,
            }
        )

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats.to_json())

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return json_response(self.stats.to_json())
