"""The LLM client: any OpenAI-compatible endpoint, with retries, fallbacks and a last word.

We call the real ``openai.AsyncOpenAI`` client with its own retries switched off and
retry here instead, because every attempt must become an ``LLMCall`` record (analytics
count retries and cost) and because a 429's ``Retry-After`` must be honoured exactly.
After the main endpoint's retry budget the fallback endpoints are tried in order; when
all fail, the configured fallback reply is returned so the customer is never left
without an answer and the turn still finishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

from schemas import LLMCall

log = logging.getLogger(__name__)

RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


@dataclass
class Completion:
    """What one turn got from the LLM: the reply text and a record per attempt."""

    text: str
    status: Literal["ok", "fallback"]
    calls: list[LLMCall] = field(default_factory=list)

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
    ) -> None:
        if not base_urls:
            raise ValueError("at least one LLM base URL is needed")
        self.base_urls = base_urls
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.fallback_reply = fallback_reply
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

    async def complete(
        self, messages: list[dict[str, str]], *, turn_id: str, chat_id: str, trace_id: str
    ) -> Completion:
        calls: list[LLMCall] = []
        attempt = 0
        for url, client in zip(self.base_urls, self._clients, strict=True):
            delay = self.backoff_s
            for _ in range(self.retries + 1):
                attempt += 1
                started = time.monotonic()
                base = {
                    "call_id": uuid.uuid4().hex,
                    "turn_id": turn_id,
                    "chat_id": chat_id,
                    "model": self.model,
                    "base_url": url,
                    "attempt": attempt,
                    "trace_id": trace_id,
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
                            "model": self.model,
                            "messages": messages,
                            "max_tokens": self.max_tokens,
                            "temperature": self.temperature,
                        },
                    )
                except RETRYABLE as exc:
                    wait = retry_after(exc)
                    wait = min(wait if wait is not None else delay, self.backoff_max_s)
                    calls.append(self._failed(base, started, exc, "retry"))
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
                except openai.APIError as exc:
                    # 400, 401, 404...: asking again will not help; try the next endpoint.
                    calls.append(self._failed(base, started, exc, "error"))
                    log.error("LLM call at %s refused: %s", url, _describe(exc))
                    break
                text, usage = _reply_and_usage(response)
                calls.append(
                    LLMCall(
                        **base,
                        status="ok",
                        prompt_tokens=usage.get("prompt_tokens", 0),
                        completion_tokens=usage.get("completion_tokens", 0),
                        total_tokens=usage.get("total_tokens", 0),
                        latency_ms=(time.monotonic() - started) * 1000,
                        http_status=200,
                    )
                )
                if text:
                    return Completion(text=text, status="ok", calls=calls)
                log.warning("LLM at %s answered with an empty reply", url)
                break
        calls.append(
            LLMCall(
                call_id=uuid.uuid4().hex,
                turn_id=turn_id,
                chat_id=chat_id,
                model=self.model,
                base_url="",
                attempt=max(attempt, 1),
                status="fallback",
                trace_id=trace_id,
            )
        )
        return Completion(text=self.fallback_reply, status="fallback", calls=calls)

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
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"{name} {status}" if status else name
