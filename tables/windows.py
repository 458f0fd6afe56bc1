"""windows: each chat's conversation window, the context sent with every prompt."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def estimate_tokens(text: str) -> int:
    """About four characters a token: close enough for budgeting, with no tokenizer."""
    return len(text) // 4 + 1


class WindowEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str
    seq: int
    at: float


class ConversationWindow(BaseModel):
    """A chat's window; frozen (``with_exchange`` makes a new one), so the windows table
    can hand out cached copies (tables/values.py)."""

    model_config = ConfigDict(frozen=True)

    entries: list[WindowEntry] = Field(default_factory=list)
    last_applied_seq: int = -1
    applied_turns: list[str] = Field(default_factory=list)
    updated_at: float = 0.0

    def is_applied(self, turn_id: str) -> bool:
        return turn_id in self.applied_turns

    def context(self, now: float, idle_expiry_s: float) -> list[WindowEntry]:
        """The entries to send, or none when the chat has been idle too long."""
        if self.updated_at and now - self.updated_at > idle_expiry_s:
            return []
        return list(self.entries)

    def with_exchange(
        self,
        *,
        turn_id: str,
        seq: int,
        user: str,
        reply: str,
        now: float,
        idle_expiry_s: float,
        max_entries: int,
        token_budget: int,
    ) -> ConversationWindow:
        """A new window with this turn and its reply, trimmed to entries and tokens."""
        entries = self.context(now, idle_expiry_s)
        entries.append(WindowEntry(role="user", content=user, seq=seq, at=now))
        entries.append(WindowEntry(role="assistant", content=reply, seq=seq, at=now))
        entries = entries[-max_entries:]
        while len(entries) > 2 and sum(estimate_tokens(e.content) for e in entries) > token_budget:
            entries = entries[1:]
        applied = [*self.applied_turns, turn_id][-64:]
        return ConversationWindow(
            entries=entries,
            last_applied_seq=max(self.last_applied_seq, seq),
            applied_turns=applied,
            updated_at=now,
        )


def windows_table(app: Any, partitions: int) -> Any:
    return app.Table(
        "windows",
        default=None,
        partitions=partitions,
        key_type=str,
        help="Per chat: the last turns and replies within a token budget.",
    )
