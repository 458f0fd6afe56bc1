"""The LLM client: any OpenAI-compatible endpoint, with retries, fallbacks and a last word.

We call the real ``openai.AsyncOpenAI`` client with its own retries switched off and
retry here instead, because every attempt must become an ``LLMCall`` record (analytics
count retries and cost) and because a 429's ``Retry-After`` must be honoured exactly.
After the main endpoint's retry budget the fallback endpoints are tried in order; when
all fail, the configured fallback reply is returned so the customer is never left
without an answer and the turn still finishes.

Provider limits are handled here, not passed on to the customer:

- Every message but the system prompt longer than ``max_message_chars`` (code points) is cut
  at a grapheme-cluster boundary before the first call, with a marker saying how much was cut;
  each ``LLMCall`` records the cut (``cut_chars``) and one warning line names the turn.
- A prompt the endpoint finds too long for the model's context (:func:`is_context_overflow`:
  OpenAI, vLLM, Ollama, LM Studio and llama.cpp shapes, see
  ``pipeline.dev.standin.providers.PROVIDERS``) is sent again without its oldest window
  entries, down to the system prompt and the current turn, before anything else is tried
  (``LLMCall.dropped_entries``).
- An empty completion is asked again once; ``max_tokens`` is sent with every request.
- A refused connection is recorded and logged as ``connection refused`` (the aiohttp transport
  reports it as ``APITimeoutError``), and no backoff is slept after an endpoint's last attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

from agents.text_limits import cut_text
from schemas import LLMCall
from schemas.fields import is_blank
from tables import estimate_tokens

log = logging.getLogger(__name__)

RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)

_SYSTEM_ROLES = frozenset({"system", "developer"})

#: What providers say when the prompt does not fit the model's context (lower-cased):
#: OpenAI "maximum context length" / code context_length_exceeded / "exceeds the context
#: window"; vLLM "maximum context length"; Ollama "the prompt is longer than the context
#: length", older "the input length exceeds the context length"; LM Studio "greater than the
#: context length", older "when context the overflows"; llama.cpp "exceeds the available
#: context size", "context size has been exceeded"; generic "prompt is too long".
_OVERFLOW_TEXT = re.compile(
    r"context[ _-]?(length|window|size)|context the overflows|maximum context"
    r"|prompt is (too long|longer)|input is too long|too many (input )?tokens",
    re.IGNORECASE,
)
_OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})

#: (room, used) in the provider's tokens, from the error text: how much of the prompt fits.
_SIZES: list[tuple[re.Pattern[str], str]] = [
    # vLLM: "'max_tokens' ... is too large: C. ... maximum context length is N tokens and your
    # request has M input tokens"
    (
        re.compile(
            r"too large: (?P<c>\d+)\. .*?maximum context length is (?P<n>\d+) tokens"
            r" and your request has (?P<m>\d+) input tokens",
            re.S,
        ),
        "n-c",
    ),
    # OpenAI: "... is N tokens. However, you requested T tokens (M in the messages, C in the
    # completion)"
    (
        re.compile(
            r"maximum context length is (?P<n>\d+) tokens.*?\((?P<m>\d+) in the "
            r"messages, (?P<c>\d+) in the completion\)",
            re.S,
        ),
        "n-c",
    ),
    # OpenAI "your messages resulted in M tokens", vLLM "your request has M input tokens"
    (
        re.compile(
            r"maximum context length is (?P<n>\d+) tokens.*?(resulted in|request has)"
            r" (?P<m>\d+)",
            re.S,
        ),
        "n",
    ),
    # llama.cpp: "request (M tokens) exceeds the available context size (N tokens)"
    (
        re.compile(
            r"request \((?P<m>\d+) tokens\) exceeds the available context size "
            r"\((?P<n>\d+) tokens\)"
        ),
        "n",
    ),
    # LM Studio: "(n_keep: M>= n_ctx: N)"; older "keep the first M tokens ... only N tokens"
    (re.compile(r"n_keep: (?P<m>\d+)\s*>=\s*n_ctx: (?P<n>\d+)"), "n"),
    (re.compile(r"keep the first (?P<m>\d+) tokens.*?of only (?P<n>\d+) tokens", re.S), "n"),
]


@dataclass
class Completion:
    """What one turn got from the LLM: the reply text and a record per attempt.

    ``cut_chars``: characters cut from over-long messages before the first call;
    ``dropped_entries``: window entries left out of the prompt that was answered.
    """

    text: str
    status: Literal["ok", "fallback"]
    calls: list[LLMCall] = field(default_factory=list)
    cut_chars: int = 0
    dropped_entries: int = 0

    @property
    def total_tokens(self) -> int:
        return sum(c.total_tokens for c in self.calls)


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, if the server sent one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def error_text(error: object) -> str:
    """Everything an error says: the exception's message and its body's message, code and
    type (an ``{"error": {...}}`` object, or LM Studio's ``{"error": "..."}`` string)."""
    texts = [str(getattr(error, "message", "") or "")]
    body = getattr(error, "body", error)
    if isinstance(body, dict) and "error" in body and len(body) <= 2:
        body = body["error"]  # a 200 answer carrying an error
    if isinstance(body, str):
        texts.append(body)
    elif isinstance(body, dict):
        texts.extend(str(body.get(key) or "") for key in ("message", "code", "type"))
    return " ".join(t for t in texts if t)


def is_context_overflow(error: object, status: int | None) -> bool:
    """True when an error means "the prompt is too long for the model's context".

    ``error`` is an ``openai.APIStatusError`` or the body of a 200 that carried an error
    (LM Studio 0.4.21, lmstudio-bug-tracker#2322). 413 always counts (vLLM as proposed in
    vllm-project/vllm#34340, and proxies with a body limit); 400, 422, 500 and 200 count
    when their code or text says so (:data:`_OVERFLOW_TEXT`). Nothing else is trimmed.
    """
    if status == 413:
        return True
    if status not in (200, 400, 422, 500):
        return False
    text = error_text(error)
    return bool(_OVERFLOW_TEXT.search(text)) or any(code in text for code in _OVERFLOW_CODES)


def _room_and_used(text: str) -> tuple[int, int] | None:
    """The prompt tokens that would fit and those sent, when the error text says both."""
    for pattern, room in _SIZES:
        match = pattern.search(text)
        if match is None:
            continue
        n, m = int(match["n"]), int(match["m"])
        fits = n - int(match["c"]) if room == "n-c" else n
        return fits, m
    return None


def entries_to_drop(
    history: Sequence[dict[str, Any]], sent: Sequence[dict[str, Any]], error: object
) -> int:
    """How many of the oldest ``history`` entries to leave out after an overflow of ``sent``.

    When the error gives sizes (OpenAI, vLLM, llama.cpp, LM Studio) just enough to shrink the
    prompt by their ratio with a 10% margin; otherwise half of what is left. Always at least
    one, and then any assistant entries that would lead the history, so it starts with the
    customer's message as chat templates expect. Never more than ``len(history)``.
    """
    if not history:
        return 0
    sizes = _room_and_used(error_text(error))
    if sizes is None or sizes[0] <= 0 or sizes[1] <= sizes[0]:
        drop = math.ceil(len(history) / 2) if sizes is None or sizes[0] > 0 else len(history)
    else:
        room, used = sizes
        total = sum(estimate_tokens(str(m.get("content", ""))) for m in sent)
        excess = total - total * room / used * 0.9
        drop, removed = 0, 0
        while drop < len(history) and (drop == 0 or removed < excess):
            removed += estimate_tokens(str(history[drop].get("content", "")))
            drop += 1
    drop = max(drop, 1)
    while drop < len(history) and history[drop].get("role") == "assistant":
        drop += 1
    return min(drop, len(history))


def _is_refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)  # aiohttp.ClientConnectorError
        if isinstance(os_error, ConnectionRefusedError):
            return True
        current = current.__cause__ or current.__context__
    return False


class LLMClient:
    """Calls the endpoints in order; one ``complete`` per turn."""

    def __init__(
        self,
        base_urls: list[str],
        *,
        api_key: str,
        model: str,
        timeout_s: float,
        max_tokens: int,
        temperature: float,
        retries: int,
        backoff_s: float,
        backoff_max_s: float,
        fallback_reply: str,
        max_message_chars: int = 4000,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one LLM base URL is needed")
        if max_message_chars < 100:
            raise ValueError("max_message_chars must be at least 100")
        self.base_urls = base_urls
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.fallback_reply = fallback_reply
        self.max_message_chars = max_message_chars
        # The aiohttp transport (openai[aiohttp]): under hundreds of concurrent calls it
        # costs far less CPU per request than the default httpx2 one.
        self._clients = [
            openai.AsyncOpenAI(
                base_url=url,
                api_key=api_key or "not-needed",
                max_retries=0,
                timeout=timeout_s,
                http_client=openai.DefaultAioHttpClient(timeout=timeout_s),
            )
            for url in base_urls
        ]

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    async def check(self, timeout_s: float = 5.0) -> dict[str, str]:
        """Asks every endpoint for ``GET /models``; returns ``{url: problem}`` for those that
        do not answer it with 200 (refused, timed out, 401 for a wrong key, 404...)."""
        problems: dict[str, str] = {}
        for url, client in zip(self.base_urls, self._clients, strict=True):
            try:
                await client.with_options(timeout=min(timeout_s, self.timeout_s)).get(
                    "/models", cast_to=dict
                )
            except openai.APIError as exc:
                problems[url] = _describe(exc)
        return problems

    def _cut(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
        out, total = [], 0
        for message in messages:
            content = message.get("content")
            if message.get("role") in _SYSTEM_ROLES or not isinstance(content, str):
                out.append(message)
                continue
            text, cut = cut_text(content, self.max_message_chars)
            total += cut
            out.append({**message, "content": text} if cut else message)
        return out, total

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        turn_id: str,
        chat_id: str,
        trace_id: str,
        model: str | None = None,
        cut_before: int = 0,
    ) -> Completion:
        """The reply to ``messages`` (system prompt first, the current turn last, the window
        between, oldest first), or the fallback reply when no endpoint gives one. ``model``
        overrides the configured model for this call (an account's profile); every endpoint
        is asked for it. ``cut_before``: characters already cut from the turn before it came
        here (``Turn.cut_chars``), added to each call's ``cut_chars``."""
        model = model or self.model
        prompt, cut_here = self._cut(messages)
        cut = cut_here + cut_before
        if cut_here:
            log.warning(
                "turn %s: %d characters cut from over-long messages before the LLM call "
                "(WABOT_LLM_MAX_MESSAGE_CHARS=%d)",
                turn_id,
                cut_here,
                self.max_message_chars,
            )
        head_len = 0
        while head_len < len(prompt) - 1 and prompt[head_len].get("role") in _SYSTEM_ROLES:
            head_len += 1
        head, history, last = prompt[:head_len], prompt[head_len:-1], prompt[-1:]
        calls: list[LLMCall] = []
        attempt = 0
        for url, client in zip(self.base_urls, self._clients, strict=True):
            delay = self.backoff_s
            failures = empties = dropped = 0
            while True:
                attempt += 1
                started = time.monotonic()
                sent = [*head, *history[dropped:], *last]
                base = {
                    "call_id": uuid.uuid4().hex,
                    "turn_id": turn_id,
                    "chat_id": chat_id,
                    "model": model,
                    "base_url": url,
                    "attempt": attempt,
                    "trace_id": trace_id,
                    "cut_chars": cut,
                    "dropped_entries": dropped,
                }
                try:
                    # client.post with a plain body, not chat.completions.create: create()
                    # walks every message through openai's TypedDict transform, which cost
                    # ~19 ms of CPU per call with a 20-message window (profiled), more than
                    # everything else a turn does. Same client, same errors and timeouts.
                    # The answer is read as a dict: building the ChatCompletion model cost
                    # another 0.7 ms a call for the three fields used here.
                    response = await client.post(
                        "/chat/completions",
                        cast_to=dict,
                        body={
                            "model": model,
                            "messages": sent,
                            "max_tokens": self.max_tokens,
                            "temperature": self.temperature,
                        },
                    )
                except openai.APIError as exc:
                    status = getattr(exc, "status_code", None)
                    if isinstance(exc, openai.APIStatusError) and is_context_overflow(exc, status):
                        more = entries_to_drop(history[dropped:], sent, exc)
                        calls.append(self._failed(base, started, exc, "retry" if more else "error"))
                        if not more:
                            log.error(
                                "LLM at %s: even the system prompt and the turn alone are too "
                                "long for the model (%s)",
                                url,
                                _describe(exc),
                            )
                            break
                        log.warning(
                            "LLM at %s: prompt too long for the model (%s); leaving out the "
                            "%d oldest window entries and asking again",
                            url,
                            _describe(exc),
                            dropped + more,
                        )
                        dropped += more
                        continue
                    if isinstance(exc, RETRYABLE):
                        failures += 1
                        calls.append(self._failed(base, started, exc, "retry"))
                        if failures > self.retries:
                            log.warning(
                                "LLM attempt %d at %s failed (%s); no retries left there",
                                attempt,
                                url,
                                _describe(exc),
                            )
                            break  # no sleep after the last attempt
                        wait = retry_after(exc)
                        wait = min(wait if wait is not None else delay, self.backoff_max_s)
                        log.warning(
                            "LLM attempt %d at %s failed (%s); retry in %.2fs",
                            attempt,
                            url,
                            _describe(exc),
                            wait,
                        )
                        await asyncio.sleep(wait)
                        delay = min(delay * 2, self.backoff_max_s)
                        continue
                    # 400, 401, 404...: asking again will not help; try the next endpoint.
                    calls.append(self._failed(base, started, exc, "error"))
                    log.error("LLM call at %s refused: %s", url, _describe(exc))
                    break
                text, usage = _reply_and_usage(response)
                tokens = {
                    "prompt_tokens": usage.get("prompt_tokens", 0),
                    "completion_tokens": usage.get("completion_tokens", 0),
                    "total_tokens": usage.get("total_tokens", 0),
                    "latency_ms": (time.monotonic() - started) * 1000,
                    "http_status": 200,
                }
                if text:
                    calls.append(LLMCall(**base, **tokens, status="ok"))
                    return Completion(
                        text=text, status="ok", calls=calls, cut_chars=cut, dropped_entries=dropped
                    )
                problem = error_text(response) if isinstance(response, dict) else ""
                if problem and is_context_overflow(response, 200) and dropped < len(history):
                    # LM Studio 0.4.21 answers an over-long prompt with 200 and an error body.
                    more = entries_to_drop(history[dropped:], sent, response)
                    calls.append(LLMCall(**base, **tokens, status="retry", error=problem[:200]))
                    log.warning(
                        "LLM at %s: prompt too long for the model (200 with an error); leaving "
                        "out the %d oldest window entries and asking again",
                        url,
                        dropped + more,
                    )
                    dropped += more
                    continue
                empties += 1
                status = "retry" if empties == 1 else "error"
                calls.append(LLMCall(**base, **tokens, status=status, error="empty completion"))
                if empties > 1:
                    log.warning("LLM at %s answered with an empty reply again", url)
                    break
                log.warning("LLM at %s answered with an empty reply; asking once more", url)
        calls.append(
            LLMCall(
                call_id=uuid.uuid4().hex,
                turn_id=turn_id,
                chat_id=chat_id,
                model=model,
                base_url="",
                attempt=max(attempt, 1),
                status="fallback",
                trace_id=trace_id,
                cut_chars=cut,
            )
        )
        return Completion(text=self.fallback_reply, status="fallback", calls=calls, cut_chars=cut)

    @staticmethod
    def _failed(base: dict[str, Any], started: float, exc: Exception, status: str) -> LLMCall:
        return LLMCall(
            **base,
            status=status,
            latency_ms=(time.monotonic() - started) * 1000,
            http_status=getattr(exc, "status_code", None),
            error=_describe(exc),
        )


def _reply_and_usage(response: object) -> tuple[str, dict[str, int]]:
    """The text of the first choice and the token counts of a chat-completions answer.

    Anything missing or of the wrong type counts as empty (an empty reply is retried at the
    next endpoint, then answered with the fallback reply).
    """
    if not isinstance(response, dict):
        return "", {}
    text = ""
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        text = content.strip() if isinstance(content, str) else ""
        if is_blank(text):  # zero-width characters only: nothing a customer would see
            text = ""
    raw_usage = response.get("usage")
    usage = {
        key: value
        for key, value in (raw_usage.items() if isinstance(raw_usage, dict) else ())
        if key in ("prompt_tokens", "completion_tokens", "total_tokens")
        and isinstance(value, int)
        and value >= 0
    }
    return text, usage


def _describe(exc: BaseException) -> str:
    """``connection refused``, or the exception's name and HTTP status (``BadRequestError 400``);
    a context overflow adds ``context_length_exceeded``."""
    if _is_refused(exc):
        return "connection refused"
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if status and is_context_overflow(exc, status):
        return f"{name} {status} context_length_exceeded"
    return f"{name} {status}" if status else name
