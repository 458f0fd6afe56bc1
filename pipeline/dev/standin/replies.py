"""The stand-in's deterministic reply: the message count, the system prompt's hash and the last
user text (``echo[3|sys:1a2b3c]: ...``), or ``n`` words for ``LONG:<n>``."""

from __future__ import annotations

import functools
import hashlib
import re

from pipeline.dev.standin.protocol import SYSTEM_ROLES, InvalidRequest, Prompt

__all__ = ["MAX_LONG_WORDS", "reply_for"]

MAX_LONG_WORDS = 100_000
"""``LONG:<n>`` above this is refused, so a typo cannot make the server build a gigabyte string."""

_LONG = re.compile(r"LONG:(\d+)")


@functools.lru_cache(maxsize=256)
def _system_hash(system: str) -> str:
    """Six hex digits of SHA-1; cached because a bot sends the same system prompt every time."""
    return hashlib.sha1(system.encode(), usedforsecurity=False).hexdigest()[:6]


def reply_for(prompt: Prompt, prefix: str) -> str:
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
            raise InvalidRequest(f"LONG:<n> is limited to {MAX_LONG_WORDS} words.", "messages")
        return " ".join(f"word{i}" for i in range(1, words + 1))
    system = [
        text for role, text in zip(prompt.roles, prompt.texts, strict=True) if role in SYSTEM_ROLES
    ]
    tag = str(len(prompt.texts))
    if system:
        tag += "|sys:" + _system_hash("\n".join(system))
    return f"{prefix}[{tag}]: {last_user}"
