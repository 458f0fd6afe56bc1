"""A small model's context window: the prompt's size in estimated tokens, and how each provider
(OpenAI, vLLM, Ollama, LM Studio, llama.cpp) refuses a prompt that does not fit, so that a
client is tested against every shape it can meet in production."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pipeline.dev.standin.protocol import SYSTEM_ROLES, error_body

__all__ = [
    "PROVIDERS",
    "Provider",
    "check_context",
    "estimate_tokens",
    "ollama_keep",
    "too_long",
]

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


def check_context(context_tokens: int | None, provider: str, status: int | None) -> None:
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


def too_long(
    provider: str, context: int, texts: Sequence[str], max_tokens: int | None
) -> dict[str, Any] | None:
    """The error body ``provider`` answers a prompt over ``context`` with; ``None`` if it fits.

    Not for Ollama, which first drops messages itself (:func:`ollama_keep`).
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
        return error_body(message, "invalid_request_error", "messages", "context_length_exceeded")
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


def ollama_keep(roles: Sequence[str], texts: Sequence[str], context: int) -> list[int] | None:
    """The indexes of the messages Ollama keeps: system messages and the newest others that fit,
    always the last one; ``None`` when even the system messages and the last do not fit."""
    last = len(texts) - 1
    keep = {i for i, role in enumerate(roles) if role in SYSTEM_ROLES} | {last}
    if estimate_tokens([texts[i] for i in keep]) > context:
        return None
    for i in range(last - 1, -1, -1):
        if i in keep:
            continue
        if estimate_tokens([texts[j] for j in keep | {i}]) > context:
            break
        keep.add(i)
    # Like Ollama, drop a contiguous run of the oldest non-system messages.
    first_kept = min((i for i in keep if roles[i] not in SYSTEM_ROLES), default=last)
    return [i for i in range(len(texts)) if roles[i] in SYSTEM_ROLES or i >= first_kept]
