"""The scripted failures a chat-completion request can be answered with, consumed first in,
first out: ``429`` with ``Retry-After``, ``500``, ``hang``, ``empty`` and ``invisible``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from pipeline.dev.standin.protocol import is_number

__all__ = ["INVISIBLE_REPLY", "MAX_QUEUED_FAILURES", "Failure", "FailureKind"]

MAX_QUEUED_FAILURES = 100_000
"""A bound on the failure script, so that a typo cannot make the server queue millions."""

FailureKind = Literal["429", "500", "hang", "empty", "invisible"]

_KINDS: frozenset[str] = frozenset({"429", "500", "hang", "empty", "invisible"})

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
        if not is_number(retry_after):
            raise ValueError("retry_after must be a number of seconds")
        times = value.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool):
            raise ValueError("times must be an integer")
        return cls(cast(FailureKind, kind), float(retry_after), times)
