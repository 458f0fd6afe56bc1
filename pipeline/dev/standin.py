"""A local HTTP server that speaks the OpenAI chat-completions protocol.

The bot, its tests and its benchmarks need an LLM endpoint that is real HTTP (so the production
client code path, connection pooling, timeouts and retries are all exercised) yet free, instant to
start and deterministic. This stand-in is that endpoint, and it is also the zero-setup default when
no LLM is configured.

Replies echo what the server received, so a test can tell from the reply alone which prompt
reached the model::

    echo[3|sys:1a2b3c]: last user message

``3`` is the number of messages and ``1a2b3c`` the first six hex digits of the SHA-1 of the system
prompt (omitted when there is none). A user message ``LONG:<n>`` asks for an ``n``-word reply
instead, which exercises reply splitting.

Failures are scripted as a FIFO queue (``429`` with ``Retry-After``, ``500``, ``hang``, or
``empty``: a 200 whose reply is the empty string) that successive chat-completion requests
consume, set either in :class:`StandinConfig` or at runtime::

    POST /admin/failures  {"failures": [{"kind": "429", "retry_after": 1}, {"kind": "hang"}],
                           "latency_s": 0.2}
    POST /admin/context   {"context_tokens": 300, "provider": "vllm", "status": 413}

A small model's context window is reproduced with ``context_tokens`` (estimated as
:func:`estimate_tokens`): a prompt that does not fit is refused the way ``provider`` refuses it,
with that provider's status and error body (see :data:`PROVIDERS`), so a client is tested against
every shape it can meet in production.
    GET  /admin/stats     request counts, counts by status, last 1000 received ``messages``
    POST /admin/reset     clears the stats and the queue, restores the configured latency/prefix

Run it in the foreground with ``python -m pipeline.dev.standin --port 8089 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import re
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

from aiohttp import web

from pipeline.dev.servers import ThreadedServer, serve_until_stopped

__all__ = [
    "MODEL_ID",
    "PROVIDERS",
    "Failure",
    "FailureKind",
    "LLMStandin",
    "Provider",
    "StandinConfig",
    "StandinStats",
    "ThreadedStandin",
    "estimate_tokens",
    "main",
    "run_in_thread",
]

MODEL_ID = "standin-1"
"""The one model ``GET /v1/models`` lists; requests may name any model, it is echoed back."""

HISTORY = 1000
"""How many received ``messages`` lists the stats keep: enough for tests, bounded for benchmarks."""

MAX_LONG_WORDS = 100_000
"""``LONG:<n>`` above this is refused, so a typo cannot make the server build a gigabyte string."""

MAX_QUEUED_FAILURES = 100_000
"""A bound on the failure script, for the same reason."""

FailureKind = Literal["429", "500", "hang", "empty", "invisible"]
_T = TypeVar("_T")

_KINDS: frozenset[str] = frozenset({"429", "500", "hang", "empty", "invisible"})

Provider = Literal["openai", "vllm", "ollama", "lmstudio", "llamacpp"]
PROVIDERS: dict[str, str] = {
    "openai": "400, code context_length_exceeded: \"This model's maximum context length is N "
    'tokens. However, your messages resulted in M tokens. ..." (or "you requested T tokens '
    '(M in the messages, C in the completion)" when max_tokens does not fit)',
    "vllm": "400, type BadRequestError, code 400: \"This model's maximum context length is N "
    "tokens. However, your request has M input tokens. ...\" or \"'max_tokens' or "
    "'max_completion_tokens' is too large: C. ...\" (vllm/entrypoints/openai/serving_engine.py; "
    "vllm-project/vllm#34340 and its PRs ask for 413 instead: set status=413)",
    "ollama": "drops the oldest non-system messages until the prompt fits (truncate defaults to "
    "true); when the system prompt and the last message alone do not fit, 400 "
    'invalid_request_error "the prompt is longer than the context length currently available '
    'to the model; ..." (ollama llm/llama_server.go, openai/openai.go NewError)',
    "lmstudio": '400 with a string error: {"error": "The number of tokens to keep from the '
    'initial prompt is greater than the context length (n_keep: M>= n_ctx: N). ..."} '
    "(lmstudio-ai/lmstudio-bug-tracker#237, #546; Gitlawb/openclaude#353)",
    "llamacpp": '400, type exceed_context_size_error: "request (M tokens) exceeds the available '
    'context size (N tokens), try increasing it" with n_prompt_tokens and n_ctx '
    "(ggml-org/llama.cpp#19774)",
}
"""How each provider refuses a prompt longer than its context window (what the stand-in sends)."""
_ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_SYSTEM_ROLES: frozenset[str] = frozenset({"system", "developer"})
_LONG = re.compile(r"LONG:(\d+)")
_JSON = "application/json"


class _InvalidRequest(Exception):
    """A request the real API would refuse with 400; carries OpenAI's ``param`` field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


#: The reply of an ``invisible`` failure: zero-width space, joiner, word joiner, BOM.
INVISIBLE_REPLY = "\u200b\u200d\u2060\ufeff"


@dataclass(frozen=True)
class Failure:
    """One scripted failure, consumed by one chat-completion request.

    ``retry_after`` (seconds) only matters for ``429``; ``empty`` answers 200 with an empty
    reply (as LM Studio does for some over-long prompts, lmstudio-bug-tracker#2339),
    ``invisible`` a reply of zero-width characters only (nothing a customer would see); ``times``
    repeats the entry so that
    "three 429s in a row" is one line rather than three.
    """

    kind: FailureKind
    retry_after: float = 1.0
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"failure kind must be one of {sorted(_KINDS)}, not {self.kind!r}")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if not 1 <= self.times <= MAX_QUEUED_FAILURES:
            raise ValueError(f"times must be between 1 and {MAX_QUEUED_FAILURES}")

    @classmethod
    def from_json(cls, value: object) -> Failure:
        """Builds a failure from the admin endpoint's JSON, naming the field that is wrong."""
        if not isinstance(value, dict):
            raise ValueError('each failure must be an object like {"kind": "429"}')
        kind = value.get("kind")
        if isinstance(kind, int) and not isinstance(kind, bool):
            kind = str(kind)
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"failure kind must be one of {sorted(_KINDS)}, not {kind!r}")
        retry_after = value.get("retry_after", 1.0)
        if not _is_number(retry_after):
            raise ValueError("retry_after must be a number of seconds")
        times = value.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool):
            raise ValueError("times must be an integer")
        return cls(cast(FailureKind, kind), float(retry_after), times)


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
        _check_context(self.context_tokens, self.provider, self.context_status)


@dataclass(frozen=True)
class StandinStats:
    """A snapshot of what the server has received since it started or was last reset.

    ``by_status`` keys are HTTP status codes as strings, plus ``"hang"`` for each request that
    began a scripted hang (whatever ended it). ``messages`` holds the ``messages`` value of the
    last :data:`HISTORY` chat-completion requests whose body had a ``messages`` list, oldest first,
    including requests that were then failed on purpose; ``max_tokens`` the ``max_tokens`` (or
    ``max_completion_tokens``) of the same requests, ``None`` where it was not set.
    """

    requests: int
    by_status: dict[str, int]
    messages: list[list[Any]]
    max_tokens: list[int | None]
    pending_failures: int
    in_flight: int
    max_in_flight: int
    latency_s: float

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /admin/stats``."""
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "pending_failures": self.pending_failures,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "latency_s": self.latency_s,
        }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_context(context_tokens: int | None, provider: str, status: int | None) -> None:
    if context_tokens is not None and (
        not isinstance(context_tokens, int)
        or isinstance(context_tokens, bool)
        or context_tokens < 1
    ):
        raise ValueError("context_tokens must be an integer >= 1 (or null: no limit)")
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {sorted(PROVIDERS)}, not {provider!r}")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise ValueError("status must be an HTTP error status (400-599) or null")


def estimate_tokens(texts: Sequence[str]) -> int:
    """The prompt's size in the stand-in's tokens: about four characters a token, plus four a
    message for the chat template's framing. Real tokenizers differ (CJK and emoji cost more), so
    clients must act on the provider's error, not on their own estimate."""
    return sum(len(text) // 4 + 4 for text in texts)


def _too_long(
    provider: str, context: int, texts: Sequence[str], max_tokens: int | None
) -> dict[str, Any] | None:
    """The error body ``provider`` answers a prompt over ``context`` with; ``None`` if it fits.

    Not for Ollama, which first drops messages itself (:func:`_ollama_keep`).
    """
    used = estimate_tokens(texts)
    completion = max_tokens or 0
    if provider == "openai":
        if used > context:
            message = (
                f"This model's maximum context length is {context} tokens. However, your "
                f"messages resulted in {used} tokens. Please reduce the length of the messages."
            )
        elif used + completion > context:
            message = (
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {used + completion} tokens ({used} in the messages, {completion} in "
                "the completion). Please reduce the length of the messages or completion."
            )
        else:
            return None
        return _error_body(message, "invalid_request_error", "messages", "context_length_exceeded")
    if provider == "vllm":
        if used >= context:
            message = (
                f"This model's maximum context length is {context} tokens. However, your "
                f"request has {used} input tokens. Please reduce the length of the input messages."
            )
        elif completion and used + completion > context:
            message = (
                f"'max_tokens' or 'max_completion_tokens' is too large: {completion}. This "
                f"model's maximum context length is {context} tokens and your request has {used} "
                f"input tokens ({completion} > {context} - {used})."
            )
        else:
            return None
        return {
            "error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}
        }
    if used <= context:
        return None
    if provider == "lmstudio":
        return {
            "error": "The number of tokens to keep from the initial prompt is greater than the "
            f"context length (n_keep: {used}>= n_ctx: {context}). Try to load the model with a "
            "larger context length, or provide a shorter input."
        }
    if provider == "llamacpp":
        return {
            "error": {
                "code": 400,
                "message": f"request ({used} tokens) exceeds the available context size "
                f"({context} tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": used,
                "n_ctx": context,
            }
        }
    return None  # ollama: handled by the caller, which drops messages first


def _ollama_keep(roles: Sequence[str], texts: Sequence[str], context: int) -> list[int] | None:
    """The indexes of the messages Ollama keeps: system messages and the newest others that fit,
    always the last one; ``None`` when even the system messages and the last do not fit."""
    last = len(texts) - 1
    keep = {i for i, role in enumerate(roles) if role in _SYSTEM_ROLES} | {last}
    if estimate_tokens([texts[i] for i in keep]) > context:
        return None
    for i in range(last - 1, -1, -1):
        if i in keep:
            continue
        if estimate_tokens([texts[j] for j in keep | {i}]) > context:
            break
        keep.add(i)
    # Like Ollama, drop a contiguous run of the oldest non-system messages.
    first_kept = min((i for i in keep if roles[i] not in _SYSTEM_ROLES), default=last)
    return [i for i in range(len(texts)) if roles[i] in _SYSTEM_ROLES or i >= first_kept]


def _error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Compact separators: at benchmark rates the bytes and the encoder time add up.
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type=_JSON,
    )


def _invalid(exc: _InvalidRequest) -> web.Response:
    return _json_response(_error_body(exc.message, "invalid_request_error", exc.param), 400)


def _text_of(content: object, param: str, role: str) -> str:
    """The text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if content is None and role in {"assistant", "tool", "function"}:
        return ""  # an assistant turn that only carried tool calls
    if isinstance(content, list):
        texts: list[str] = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise _InvalidRequest(
                    f"Invalid content part at '{param}[{index}]': expected an object with a "
                    "'type'.",
                    f"{param}[{index}]",
                )
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise _InvalidRequest(
                        f"Invalid type for '{param}[{index}].text': expected a string.",
                        f"{param}[{index}].text",
                    )
                texts.append(text)
        return "\n".join(texts)
    raise _InvalidRequest(
        f"Invalid type for '{param}': expected a string or an array of content parts.", param
    )


@dataclass(frozen=True)
class _Prompt:
    """A validated chat-completion request, reduced to what the reply depends on."""

    model: str
    roles: list[str]
    texts: list[str]
    max_tokens: int | None


def _parse_completion_request(body: object) -> _Prompt:
    """Validates a request body the way the real API does, with OpenAI's wording where it helps."""
    if not isinstance(body, dict):
        raise _InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise _InvalidRequest("Missing required parameter: 'model'.", "model")
    if not isinstance(model, str) or not model:
        raise _InvalidRequest("Invalid type for 'model': expected a non-empty string.", "model")
    if body.get("stream"):
        raise _InvalidRequest(
            "Streaming is not supported by the LLM stand-in; send 'stream': false.", "stream"
        )
    messages = body.get("messages")
    if messages is None:
        raise _InvalidRequest("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise _InvalidRequest("Invalid type for 'messages': expected an array.", "messages")
    if not messages:
        raise _InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
        )
    roles: list[str] = []
    texts: list[str] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _InvalidRequest(f"Invalid type for '{param}': expected an object.", param)
        role = message.get("role")
        if role is None:
            raise _InvalidRequest(f"Missing required parameter: '{param}.role'.", f"{param}.role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _InvalidRequest(
                f"Invalid value: {role!r}. Supported values are: {', '.join(sorted(_ROLES))}.",
                f"{param}.role",
            )
        if "content" not in message and role not in {"assistant"}:
            raise _InvalidRequest(
                f"Missing required parameter: '{param}.content'.", f"{param}.content"
            )
        roles.append(role)
        texts.append(_text_of(message.get("content"), f"{param}.content", role))
    max_tokens: object = body.get("max_completion_tokens")
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, param = body.get("max_tokens"), "max_tokens"
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise _InvalidRequest(f"Invalid '{param}': expected an integer >= 1.", param)
    return _Prompt(model, roles, texts, max_tokens)


@functools.lru_cache(maxsize=256)
def _system_hash(system: str) -> str:
    """Six hex digits of SHA-1; cached because a bot sends the same system prompt every time."""
    return hashlib.sha1(system.encode(), usedforsecurity=False).hexdigest()[:6]


def _reply_for(prompt: _Prompt, prefix: str) -> str:
    """The deterministic reply: it names the message count, the system hash and the last user text.

    Tests compare against it, so it depends on nothing but the request and the prefix.
    """
    last_user = next(
        (
            text
            for role, text in zip(reversed(prompt.roles), reversed(prompt.texts), strict=True)
            if role == "user"
        ),
        "",
    )
    long = _LONG.fullmatch(last_user.strip())
    if long is not None:
        words = int(long.group(1))
        if words > MAX_LONG_WORDS:
            raise _InvalidRequest(f"LONG:<n> is limited to {MAX_LONG_WORDS} words.", "messages")
        return " ".join(f"word{i}" for i in range(1, words + 1))
    system = [
        text for role, text in zip(prompt.roles, prompt.texts, strict=True) if role in _SYSTEM_ROLES
    ]
    tag = str(len(prompt.texts))
    if system:
        tag += "|sys:" + _system_hash("\n".join(system))
    return f"{prefix}[{tag}]: {last_user}"


def _completion(prompt: _Prompt, reply: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object, with word counts standing in for tokens."""
    words = reply.split()
    finish_reason = "stop"
    if prompt.max_tokens is not None and len(words) > prompt.max_tokens:
        words = words[: prompt.max_tokens]
        reply = " ".join(words)
        finish_reason = "length"
    prompt_tokens = sum(len(text.split()) for text in prompt.texts) + 3 * len(prompt.texts)
    completion_tokens = len(words)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": prompt.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": None,
    }


def _retry_after_header(seconds: float) -> str:
    # Whole seconds is what HTTP specifies; fractions are kept because the openai client parses
    # them and sub-second retries keep tests fast.
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


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
        _check_context(context_tokens, provider, status)
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
            return _invalid(
                _InvalidRequest(
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
                return _json_response(
                    _error_body(
                        "Rate limit reached for requests (injected by the LLM stand-in).",
                        "requests",
                        code="rate_limit_exceeded",
                    ),
                    429,
                    {"Retry-After": _retry_after_header(failure.retry_after)},
                )
            if failure.kind == "500":
                return _json_response(
                    _error_body(
                        "The server had an error while processing your request "
                        "(injected by the LLM stand-in).",
                        "server_error",
                    ),
                    500,
                )
            if failure.kind in ("empty", "invisible"):
                try:
                    prompt = _parse_completion_request(body)
                except _InvalidRequest as exc:
                    return _invalid(exc)
                reply = "" if failure.kind == "empty" else INVISIBLE_REPLY
                return _json_response(_completion(prompt, reply))
            self._by_status["hang"] += 1
            await self._sleep(self._config.hang_max_s)
            return _json_response(
                _error_body("The injected hang reached its bound.", "timeout"), 504
            )
        try:
            prompt = _parse_completion_request(body)
        except _InvalidRequest as exc:
            return _invalid(exc)
        if self._context_tokens is not None:
            refusal, prompt = self._fit(prompt, self._context_tokens)
            if refusal is not None:
                return refusal
        try:
            reply = _reply_for(prompt, self._prefix)
        except _InvalidRequest as exc:
            return _invalid(exc)
        if self._latency_s > 0:
            await self._sleep(self._latency_s)
        return _json_response(_completion(prompt, reply))

    def _fit(self, prompt: _Prompt, context: int) -> tuple[web.Response | None, _Prompt]:
        """The provider's refusal of a prompt over ``context``, or the prompt the model sees."""
        if self._provider == "ollama":
            keep = _ollama_keep(prompt.roles, prompt.texts, context)
            if keep is None:
                body = _error_body(
                    "the prompt is longer than the context length currently available to the "
                    "model; shorten the prompt, adjust the context length in settings, or use a "
                    "model with a longer context length",
                    "invalid_request_error",
                )
                return _json_response(body, self._context_status or 400), prompt
            return None, _Prompt(
                prompt.model,
                [prompt.roles[i] for i in keep],
                [prompt.texts[i] for i in keep],
                prompt.max_tokens,
            )
        refusal = _too_long(self._provider, context, prompt.texts, prompt.max_tokens)
        if refusal is None:
            return None, prompt
        return _json_response(refusal, self._context_status or 400), prompt

    async def _models(self, request: web.Request) -> web.Response:
        return _json_response(
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
            if latency_s is not None and not _is_number(latency_s):
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
            return _json_response(_error_body(str(exc), "invalid_request_error"), 400)
        return _json_response(
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
            return _json_response(_error_body(str(exc), "invalid_request_error"), 400)
        return _json_response(
            {
                "context_tokens": self._context_tokens,
                "provider": self._provider,
                "status": self._context_status,
            }
        )

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return _json_response(self.stats.to_json())

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json_response(self.stats.to_json())


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
