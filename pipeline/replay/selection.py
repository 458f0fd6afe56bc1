"""Which recorded ``wa.inbound`` records a replay reruns: a time range, chats, offsets.

Times are the records' Kafka timestamps (the gateway produces each message as it receives
it, so they are its ``received_at`` to within milliseconds), found with Kafka's
offsets-for-times; chats are the records' keys (the canonical chat id); offset ranges
name partitions directly (``3:100-200`` is offsets 100 to 199 of partition 3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import InvalidChatIdError, canonical_chat_id

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_OFFSETS = re.compile(r"^(\d+):(\d+)-(\d*)$")


class SelectionError(Exception):
    """The selection is malformed or matches nothing; the message says which part."""


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``-24h``/``-30m``/``-7d``/``-90s`` before ``now``, ``now``, or an ISO 8601 time
    (without a zone it is UTC). Returns an aware UTC datetime; raises SelectionError."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = float(relative.group(1)), _UNITS[relative.group(2)]
        return now - timedelta(**{unit: amount})
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-29T08:00) or -24h, -30m, -7d"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class OffsetRange:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive; None: the partition's end)."""

    partition: int
    start: int
    end: int | None

    @classmethod
    def parse(cls, text: str) -> OffsetRange:
        """``P:START-END`` or ``P:START-``; raises SelectionError."""
        found = _OFFSETS.match(text.strip())
        if not found:
            raise SelectionError(f"{text!r} is not an offset range: use PARTITION:START-END")
        end = int(found.group(3)) if found.group(3) else None
        offsets = cls(int(found.group(1)), int(found.group(2)), end)
        if end is not None and end <= offsets.start:
            raise SelectionError(f"offset range {text!r} is empty (END is exclusive)")
        return offsets

    def __str__(self) -> str:
        return f"{self.partition}:{self.start}-{'' if self.end is None else self.end}"


@dataclass(frozen=True)
class Selection:
    """What to replay. Empty fields select everything still on the topic."""

    since: datetime | None = None
    until: datetime | None = None
    chats: frozenset[str] = frozenset()
    offsets: tuple[OffsetRange, ...] = field(default_factory=tuple)

    @classmethod
    def parse(
        cls,
        *,
        since: str | None,
        until: str | None,
        chats: tuple[str, ...] | list[str] = (),
        offsets: tuple[str, ...] | list[str] = (),
        now: datetime | None = None,
    ) -> Selection:
        """Build from the command's options; raises SelectionError naming the bad part."""
        now = now or datetime.now(UTC)
        start = parse_when(since, now) if since else None
        end = parse_when(until, now) if until else None
        if start is not None and end is not None and end <= start:
            raise SelectionError(f"--until ({end.isoformat()}) is not after --since")
        canonical = set()
        for chat in chats:
            try:
                canonical.add(canonical_chat_id(chat))
            except InvalidChatIdError as exc:
                raise SelectionError(f"--chat {chat!r}: {exc}") from None
        ranges = tuple(OffsetRange.parse(o) for o in offsets)
        partitions = [r.partition for r in ranges]
        if len(set(partitions)) != len(partitions):
            raise SelectionError("give at most one offset range per partition")
        return cls(start, end, frozenset(canonical), ranges)

    def range_for(self, partition: int) -> OffsetRange | None:
        """The offset range asked for ``partition``; None when ranges were given but not
        for it (it is not replayed), or a whole-partition range when none were given."""
        if not self.offsets:
            return OffsetRange(partition, 0, None)
        return next((r for r in self.offsets if r.partition == partition), None)

    def admits(self, key: bytes | None, timestamp_ms: int) -> bool:
        """True when a record with this key (chat id) and Kafka timestamp is selected."""
        if self.since is not None and timestamp_ms < self.since.timestamp() * 1000:
            return False
        if self.until is not None and timestamp_ms >= self.until.timestamp() * 1000:
            return False
        if self.chats:
            return key is not None and key.decode(errors="replace") in self.chats
        return True

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``run.json``), read back by :meth:`from_dict`."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "chats": sorted(self.chats),
            "offsets": [str(r) for r in self.offsets],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        """The selection :meth:`as_dict` wrote; raises SelectionError on a malformed one."""
        try:
            since, until = data.get("since"), data.get("until")
            return cls(
                datetime.fromisoformat(since) if since else None,
                datetime.fromisoformat(until) if until else None,
                frozenset(str(c) for c in data.get("chats", ())),
                tuple(OffsetRange.parse(str(o)) for o in data.get("offsets", ())),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise SelectionError(f"not a stored selection: {exc}") from None

    def describe(self) -> str:
        """One line for logs and the report, e.g. ``2026-11-29T00:00Z .. now, 2 chats``."""
        parts = [
            f"{_short(self.since) if self.since else 'start'} .. "
            f"{_short(self.until) if self.until else 'now'}"
        ]
        if self.chats:
            parts.append(
                f"{len(self.chats)} chat{'s' if len(self.chats) > 1 else ''}: "
                + ", ".join(sorted(self.chats))
            )
        if self.offsets:
            parts.append("offsets " + " ".join(str(r) for r in self.offsets))
        return ", ".join(parts)


def _short(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
