"""The LLM stand-in, driven through the real openai client over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from pipeline.dev.standin.config import StandinConfig
from pipeline.dev.standin.failures import Failure
from pipeline.dev.standin.server import LLMStandin
from pipeline.dev.standin.threaded import run_in_thread

pytestmark = pytest.mark.unit


def _admin_url(server: LLMStandin, path: str) -> str:
    return server.base_url.removesuffix("/v1") + path


async def _admin(server: LLMStandin, method: str, path: str, body: object = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, _admin_url(server, path), json=body) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def standin() -> AsyncIterator[LLMStandin]:
    async with LLMStandin() as server:
        yield server


@pytest.fixture
async def client(standin: LLMStandin) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=standin.base_url, api_key="test", max_retries=0, timeout=5.0
    ) as llm:
        yield llm


async def _ask(client: openai.AsyncOpenAI, text: str, **kwargs: Any) -> Any:
    return await client.chat.completions.create(
        model="standin-1", messages=[{"role": "user", "content": text}], **kwargs
    )


async def test_reply_shows_last_user_message_count_and_system_hash(
    client: openai.AsyncOpenAI,
) -> None:
    system = "You are a terse WhatsApp assistant."
    completion = await client.chat.completions.create(
        model="my-model",
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    )
    digest = hashlib.sha1(system.encode()).hexdigest()[:6]
    assert completion.choices[0].message.content == f"echo[4|sys:{digest}]: second question"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "my-model"


async def test_reply_without_system_prompt_has_no_hash(client: openai.AsyncOpenAI) -> None:
    completion = await _ask(client, "hello there")
    assert completion.choices[0].message.content == "echo[1]: hello there"


async def test_usage_counts_words_plus_three_per_message(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="standin-1",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "how are you today"},
        ],
    )
    reply = completion.choices[0].message.content
    assert reply is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == (2 + 4) + 3 * 2
    assert completion.usage.completion_tokens == len(reply.split()) == 5
    assert completion.usage.total_tokens == 12 + 5


async def test_models_lists_the_standin_model(client: openai.AsyncOpenAI) -> None:
    models = [model async for model in client.models.list()]
    assert [(m.id, m.object, m.owned_by) for m in models] == [("standin-1", "model", "wabot")]


async def test_429_carries_retry_after_then_the_next_request_succeeds(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    status, _ = await _admin(
        standin, "POST", "/admin/failures", {"failures": [{"kind": "429", "retry_after": 7}]}
    )
    assert status == 200
    with pytest.raises(openai.RateLimitError) as caught:
        await _ask(client, "are you there?")
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert (await _ask(client, "again")).choices[0].message.content == "echo[1]: again"


async def test_500_is_an_internal_server_error(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    standin.set_failures([Failure("500", times=2)])
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await _ask(client, "hi")
    await _ask(client, "hi")
    assert standin.stats.by_status == {"500": 2, "200": 1}


async def test_hang_times_the_client_out(standin: LLMStandin, client: openai.AsyncOpenAI) -> None:
    standin.set_failures([Failure("hang")])
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await _ask(client, "hi", timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert (await _ask(client, "after")).choices[0].message.content == "echo[1]: after"


async def test_stop_cuts_a_hang_short() -> None:
    server = LLMStandin(StandinConfig(failures=[Failure("hang")]))
    await server.start()
    llm = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    pending = asyncio.create_task(_ask(llm, "hi", timeout=30.0))
    while server.stats.in_flight == 0:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(openai.APIConnectionError):
        await pending
    await llm.close()


async def test_missing_messages_is_a_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post("/chat/completions", cast_to=object, body={"model": "standin-1"})
    assert "Missing required parameter: 'messages'" in caught.value.message
    assert caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"


async def test_message_without_content_is_a_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="standin-1", messages=[{"role": "user"}])  # type: ignore[typeddict-item]
    assert caught.value.param == "messages[0].content"


async def test_streaming_is_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await _ask(client, "hi", stream=True)
    assert "Streaming is not supported" in caught.value.message


async def test_max_tokens_truncates_with_finish_reason_length(client: openai.AsyncOpenAI) -> None:
    completion = await _ask(client, "one two three four five six", max_tokens=3)
    assert completion.choices[0].message.content == "echo[1]: one two"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_long_asks_for_a_reply_of_n_words(client: openai.AsyncOpenAI) -> None:
    completion = await _ask(client, "LONG:50")
    content = completion.choices[0].message.content
    assert content is not None
    words = content.split()
    assert len(words) == 50
    assert words[0] == "word1"
    assert words[-1] == "word50"
    assert completion.choices[0].finish_reason == "stop"


async def test_latency_is_applied_and_settable_at_runtime(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    started = time.monotonic()
    await _ask(client, "quick")
    assert time.monotonic() - started < 0.25

    status, body = await _admin(standin, "POST", "/admin/failures", {"latency_s": 0.3})
    assert (status, body["latency_s"]) == (200, 0.3)
    started = time.monotonic()
    await _ask(client, "slow")
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_configured_latency_applies_to_concurrent_requests() -> None:
    async with (
        LLMStandin(StandinConfig(latency_s=0.3)) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as llm,
    ):
        started = time.monotonic()
        replies = await asyncio.gather(*(_ask(llm, f"n{i}") for i in range(20)))
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 1.5  # concurrent, not 20 x 0.3 s
        assert server.stats.max_in_flight > 1
        assert {r.choices[0].message.content for r in replies} == {
            f"echo[1]: n{i}" for i in range(20)
        }


async def test_admin_stats_record_prompts_and_statuses_and_reset_clears(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    await _admin(
        standin, "POST", "/admin/failures", {"failures": [{"kind": 429, "retry_after": 0}]}
    )
    with pytest.raises(openai.RateLimitError):
        await _ask(client, "first")
    await _ask(client, "second")
    with pytest.raises(openai.BadRequestError):
        await client.post("/chat/completions", cast_to=object, body={"messages": []})

    status, stats = await _admin(standin, "GET", "/admin/stats")
    assert status == 200
    assert stats["requests"] == 3
    assert stats["by_status"] == {"429": 1, "200": 1, "400": 1}
    assert stats["messages"] == [
        [{"role": "user", "content": "first"}],
        [{"role": "user", "content": "second"}],
        [],
    ]
    assert stats["pending_failures"] == 0

    status, cleared = await _admin(standin, "POST", "/admin/reset")
    assert status == 200
    assert (cleared["requests"], cleared["by_status"], cleared["messages"]) == (0, {}, [])


async def test_admin_rejects_an_unknown_failure_kind(standin: LLMStandin) -> None:
    status, body = await _admin(standin, "POST", "/admin/failures", {"failures": [{"kind": "418"}]})
    assert status == 400
    assert "failure kind" in body["error"]["message"]
    assert standin.stats.pending_failures == 0


def test_run_in_thread_serves_synchronous_clients() -> None:
    with run_in_thread(StandinConfig(reply_prefix="bot")) as server:
        server.set_failures([Failure("429", retry_after=0.1)])
        llm = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=1)
        try:
            completion = llm.chat.completions.create(
                model="standin-1", messages=[{"role": "user", "content": "sync hello"}]
            )
        finally:
            llm.close()
        assert completion.choices[0].message.content == "bot[1]: sync hello"
        assert server.stats.by_status == {"429": 1, "200": 1}
    server.stop()  # a second stop is harmless


def _long_prompt(entries: int) -> list[dict[str, str]]:
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"entry {i} " + "x" * 200}
        for i in range(entries)
    ]
    return [{"role": "system", "content": "be brief"}, *history, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("provider", "status", "check"),
    [
        (
            "openai",
            400,
            lambda e: (
                e.code == "context_length_exceeded"
                and e.type == "invalid_request_error"
                and e.param == "messages"
                and "maximum context length is 100 tokens. However, your messages resulted in"
                in e.message
            ),
        ),
        (
            "vllm",
            400,
            lambda e: (
                e.type == "BadRequestError"
                and str(e.code) == "400"
                and "However, your request has" in e.message
            ),
        ),
        ("lmstudio", 400, lambda e: isinstance(e.body, str) and "n_ctx: 100" in e.body),
        (
            "llamacpp",
            400,
            lambda e: (
                e.type == "exceed_context_size_error"
                and e.body["n_ctx"] == 100
                and "exceeds the available context size (100 tokens)" in e.message
            ),
        ),
    ],
)
async def test_an_overlong_prompt_is_refused_in_each_providers_shape(
    standin: LLMStandin, client: openai.AsyncOpenAI, provider: str, status: int, check: Any
) -> None:
    standin.set_context(100, provider)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="standin-1", messages=_long_prompt(4))  # type: ignore[arg-type]
    assert caught.value.status_code == status
    assert check(caught.value), caught.value.body
    # A short prompt still fits.
    assert (await _ask(client, "hi")).choices[0].message.content == "echo[1]: hi"


async def test_openai_and_vllm_count_max_tokens_against_the_context(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    standin.set_context(100, "openai")
    with pytest.raises(openai.BadRequestError) as caught:
        await _ask(client, "hi", max_tokens=200)
    assert "(4 in the messages, 200 in the completion)" in caught.value.message
    standin.set_context(100, "vllm", 413)
    with pytest.raises(openai.APIStatusError) as too_large:
        await _ask(client, "hi", max_tokens=200)
    assert too_large.value.status_code == 413
    assert "'max_tokens' or 'max_completion_tokens' is too large: 200" in too_large.value.message


async def test_ollama_drops_the_oldest_messages_and_refuses_only_an_overlong_last_one(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    status, body = await _admin(
        standin, "POST", "/admin/context", {"context_tokens": 150, "provider": "ollama"}
    )
    assert (status, body["provider"]) == (200, "ollama")
    completion = await client.chat.completions.create(
        model="standin-1",
        messages=_long_prompt(6),  # type: ignore[arg-type]
    )
    digest = hashlib.sha1(b"be brief").hexdigest()[:6]
    # system + the two newest entries + the last message fit in 150 estimated tokens
    assert completion.choices[0].message.content == f"echo[4|sys:{digest}]: hi"
    with pytest.raises(openai.BadRequestError) as caught:
        await _ask(client, "y" * 1000)
    assert "- the prompt is longer than the context length" in caught.value.message
    assert caught.value.type == "invalid_request_error"


async def test_admin_context_rejects_an_unknown_provider(standin: LLMStandin) -> None:
    status, body = await _admin(
        standin, "POST", "/admin/context", {"context_tokens": 10, "provider": "nope"}
    )
    assert status == 400
    assert "provider" in body["error"]["message"]


async def test_empty_failure_answers_200_with_an_empty_reply(
    standin: LLMStandin, client: openai.AsyncOpenAI
) -> None:
    standin.set_failures([Failure("empty")])
    completion = await _ask(client, "hi", max_tokens=7)
    assert completion.choices[0].message.content == ""
    assert (await _ask(client, "hi")).choices[0].message.content == "echo[1]: hi"
    assert standin.stats.max_tokens == [7, None]
