"""pipeline.llm.client.LLMClient against the stand-in: the real openai client over real HTTP
on 127.0.0.1.

Every provider's refusal of an over-long prompt (pipeline.dev.standin.providers.PROVIDERS) is met by
trimming the oldest window entries; the system prompt and the current turn are always sent.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.application.app import PipelineApp
from pipeline.config.settings import Settings
from pipeline.dev.standin.failures import Failure
from pipeline.dev.standin.server import LLMStandin
from pipeline.llm.client import LLMClient
from pipeline.llm.proxy import LLMProxy

pytestmark = pytest.mark.unit

SYSTEM = "You are a friendly, concise assistant answering WhatsApp messages for a small business."


def _client(url: str | list[str], **overrides: Any) -> LLMClient:
    """A client built from the settings' defaults, as the worker builds it."""
    s = Settings()
    options: dict[str, Any] = {
        "api_key": "test",
        "model": "standin-1",
        "timeout_s": 5.0,
        "max_tokens": s.llm_max_tokens,
        "temperature": s.llm_temperature,
        "retries": s.llm_retries,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        "fallback_reply": s.llm_fallback_reply,
    }
    options.update(overrides)
    urls = [url] if isinstance(url, str) else url
    return LLMClient(urls, **options)


def _prompt(entries: int, turn: str = "what now?", size: int = 200) -> list[dict[str, str]]:
    history = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"entry {i:02d} " + "x" * size,
        }
        for i in range(entries)
    ]
    return [{"role": "system", "content": SYSTEM}, *history, {"role": "user", "content": turn}]


async def _complete(client: LLMClient, messages: list[dict[str, str]]) -> Any:
    return await client.complete(messages, turn_id="t1", chat_id="49170000@c.us", trace_id="tr")


@pytest.fixture
async def standin() -> AsyncIterator[LLMStandin]:
    async with LLMStandin() as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("provider", "status"),
    [("openai", None), ("vllm", None), ("vllm", 413), ("lmstudio", None), ("llamacpp", None)],
    ids=["openai", "vllm", "vllm-413", "lmstudio", "llamacpp"],
)
async def test_an_overlong_window_is_trimmed_from_the_oldest_entry_until_it_fits(
    standin: LLMStandin, provider: str, status: int | None
) -> None:
    standin.set_context(300, provider, status)
    messages = _prompt(20)
    client = _client(standin.base_url, max_tokens=64)
    try:
        completion = await _complete(client, messages)
    finally:
        await client.close()

    assert completion.status == "ok", completion.calls
    assert completion.text.startswith("echo[")
    assert completion.text.endswith(": what now?")
    sent = standin.stats.messages
    assert 2 <= len(sent) <= 6  # a few shorter prompts, not one per entry
    for prompt in sent:
        assert prompt[0] == messages[0]  # the system prompt, every time
        assert prompt[-1] == messages[-1]  # the current turn, every time
        history = prompt[1:-1]
        assert history == messages[len(messages) - 1 - len(history) : -1]  # newest, in order
        assert not history or history[0]["role"] == "user"
    assert len(sent[-1]) < len(messages)
    calls = completion.calls
    assert [c.status for c in calls[:-1]] == ["retry"] * (len(calls) - 1)
    assert {c.http_status for c in calls[:-1]} == {status or 400}
    assert calls[-1].status == "ok"
    assert calls[-1].dropped_entries == len(messages) - len(sent[-1])
    assert calls[0].dropped_entries == 0


async def test_ollama_drops_old_messages_itself_and_the_client_needs_no_retry(
    standin: LLMStandin,
) -> None:
    standin.set_context(300, "ollama")
    client = _client(standin.base_url)
    try:
        completion = await _complete(client, _prompt(20))
    finally:
        await client.close()
    assert completion.status == "ok"
    assert [c.status for c in completion.calls] == ["ok"]
    shown = int(completion.text.split("[", 1)[1].split("|", 1)[0])
    assert shown < 22  # the model saw fewer messages than were sent


async def test_a_prompt_that_never_fits_ends_with_system_and_turn_alone_then_the_fallback(
    standin: LLMStandin,
) -> None:
    standin.set_context(20, "openai")
    messages = _prompt(8)
    client = _client(standin.base_url, max_tokens=64)
    try:
        completion = await _complete(client, messages)
    finally:
        await client.close()
    assert completion.status == "fallback"
    assert completion.text == Settings().llm_fallback_reply
    assert standin.stats.messages[-1] == [messages[0], messages[-1]]


async def test_a_long_turn_is_cut_before_the_call_and_the_cut_is_recorded(
    standin: LLMStandin, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "ab " * 300_000  # 900,000 characters
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": huge},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": huge},
    ]
    client = _client(standin.base_url)
    caplog.set_level(logging.WARNING, logger="pipeline.llm.client")
    try:
        completion = await _complete(client, messages)
    finally:
        await client.close()
    limit = Settings().llm_max_message_chars
    sent = standin.stats.messages[-1]
    assert sent[0]["content"] == SYSTEM
    assert all(len(m["content"]) <= limit for m in sent[1:])
    assert sent[-1]["content"].startswith("ab ab ")
    assert completion.status == "ok"
    cut = 0
    for message in (sent[1], sent[3]):
        kept, marker = message["content"].rsplit("\n", 1)
        assert huge.startswith(kept)
        assert marker == f"[... {len(huge) - len(kept)} more characters not shown]"
        cut += len(huge) - len(kept)
    assert [c.cut_chars for c in completion.calls] == [cut]
    assert completion.cut_chars == cut
    lines = [r.getMessage() for r in caplog.records if "cut" in r.getMessage()]
    assert len(lines) == 1 and "t1" in lines[0] and str(cut) in lines[0]


async def test_an_overlong_turn_to_ollama_fits_once_cut(standin: LLMStandin) -> None:
    standin.set_context(1500, "ollama")
    client = _client(standin.base_url)
    try:
        completion = await _complete(client, _prompt(0, turn="y" * 30_000))
    finally:
        await client.close()
    assert completion.status == "ok"


async def test_max_tokens_is_sent_with_every_request(standin: LLMStandin) -> None:
    standin.set_context(300, "vllm")
    client = _client(standin.base_url, max_tokens=64)
    try:
        await _complete(client, _prompt(12))
    finally:
        await client.close()
    assert len(standin.stats.max_tokens) > 1
    assert set(standin.stats.max_tokens) == {64}


async def test_an_empty_completion_is_asked_again_once(standin: LLMStandin) -> None:
    standin.set_failures([Failure("empty")])
    client = _client(standin.base_url)
    try:
        completion = await _complete(client, _prompt(2))
        assert completion.status == "ok"
        assert [c.status for c in completion.calls] == ["retry", "ok"]
        assert completion.calls[0].error == "empty completion"

        standin.set_failures([Failure("empty", times=2)])
        before = standin.stats.requests
        completion = await _complete(client, _prompt(2))
    finally:
        await client.close()
    assert completion.status == "fallback"
    assert standin.stats.requests - before == 2


async def test_an_invisible_completion_counts_as_empty(standin: LLMStandin) -> None:
    standin.set_failures([Failure("invisible")])
    client = _client(standin.base_url)
    try:
        completion = await _complete(client, _prompt(2))
    finally:
        await client.close()
    assert [c.status for c in completion.calls] == ["retry", "ok"]
    assert completion.calls[0].error == "empty completion"
    assert completion.text.startswith("echo[")


async def test_a_refused_connection_is_reported_as_refused_and_the_last_attempt_is_not_slept_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    client = _client(url, retries=2, backoff_s=0.4, backoff_max_s=10.0)
    caplog.set_level(logging.WARNING, logger="pipeline.llm.client")
    started = time.monotonic()
    try:
        completion = await _complete(client, _prompt(0))
    finally:
        await client.close()
    elapsed = time.monotonic() - started
    assert completion.status == "fallback"
    # 0.4 s and 0.8 s between the three attempts; no 1.6 s after the last one.
    assert 1.2 <= elapsed < 1.9
    failed = [c for c in completion.calls if c.status == "retry"]
    assert len(failed) == 3
    assert all(c.error == "connection refused" for c in failed)
    assert all("Timeout" not in r.getMessage() for r in caplog.records)
    assert any("connection refused" in r.getMessage() for r in caplog.records)


async def test_check_names_the_endpoints_that_do_not_answer_models(standin: LLMStandin) -> None:
    refused = f"http://127.0.0.1:{_free_port()}/v1"
    client = _client([standin.base_url, refused])
    try:
        problems = await client.check()
    finally:
        await client.close()
    assert list(problems) == [refused]
    assert problems[refused] == "connection refused"


async def test_the_worker_warns_once_at_start_when_the_endpoint_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = f"http://127.0.0.1:{_free_port()}/v1"
    app = SimpleNamespace(settings=Settings(llm_base_url=refused), standin=None)
    proxy = LLMProxy()
    caplog.set_level(logging.INFO)
    await PipelineApp._start_llm(app, proxy)  # type: ignore[arg-type]
    assert proxy.client is not None
    await proxy.client.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert refused in warnings[0] and "/models" in warnings[0]
