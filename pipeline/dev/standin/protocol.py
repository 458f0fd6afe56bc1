"""The chat-completions wire format: a request validated the way the real API validates it (with
OpenAI's wording where it helps), reduced to a :class:`Prompt`; the ``chat.completion`` body
and the error bodies, as compact JSON responses."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = [
    "ROLES",
    "SYSTEM_ROLES",
    "InvalidRequest",
    "Prompt",
    "completion",
    "error_body",
    "invalid",
    "is_number",
    "json_response",
    "parse_completion_request",
    "retry_after_header",
]

#: The message roles the API accepts.
ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
#: The roles whose messages are the system prompt.
SYSTEM_ROLES: frozenset[str] = frozenset({"system", "developer"})
_JSON = "application/json"


class InvalidRequest(Exception):
    """A request the real API would refuse with 400; carries OpenAI's ``param`` field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def is_number(value: object) -> bool:
    """A JSON number (``true`` and ``false`` are none)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Compact separators: at benchmark rates the bytes and the encoder time add up.
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type=_JSON,
    )


def invalid(exc: InvalidRequest) -> web.Response:
    return json_response(error_body(exc.message, "invalid_request_error", exc.param), 400)


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
                raise InvalidRequest(
                    f"Invalid content part at '{param}[{index}]': expected an object with a "
                    "'type'.",
                    f"{param}[{index}]",
                )
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise InvalidRequest(
                        f"Invalid type for '{param}[{index}].text': expected a string.",
                        f"{param}[{index}].text",
                    )
                texts.append(text)
        return "\n".join(texts)
    raise InvalidRequest(
        f"Invalid type for '{param}': expected a string or an array of content parts.", param
    )


@dataclass(frozen=True)
class Prompt:
    """A validated chat-completion request, reduced to what the reply depends on."""

    model: str
    roles: list[str]
    texts: list[str]
    max_tokens: int | None


def parse_completion_request(body: object) -> Prompt:
    """Validates a request body the way the real API does, with OpenAI's wording where it helps."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", "model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Invalid type for 'model': expected a non-empty string.", "model")
    if body.get("stream"):
        raise InvalidRequest(
            "Streaming is not supported by the LLM stand-in; send 'stream': false.", "stream"
        )
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise InvalidRequest("Invalid type for 'messages': expected an array.", "messages")
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
        )
    roles: list[str] = []
    texts: list[str] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param)
        role = message.get("role")
        if role is None:
            raise InvalidRequest(f"Missing required parameter: '{param}.role'.", f"{param}.role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(
                f"Invalid value: {role!r}. Supported values are: {', '.join(sorted(ROLES))}.",
                f"{param}.role",
            )
        if "content" not in message and role not in {"assistant"}:
            raise InvalidRequest(
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
        raise InvalidRequest(f"Invalid '{param}': expected an integer >= 1.", param)
    return Prompt(model, roles, texts, max_tokens)


def completion(prompt: Prompt, reply: str) -> dict[str, Any]:
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


def retry_after_header(seconds: float) -> str:
    # Whole seconds is what HTTP specifies; fractions are kept because the openai client parses
    # them and sub-second retries keep tests fast.
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
