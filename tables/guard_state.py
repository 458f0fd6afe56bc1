"""guard_state: what the guard remembers per chat (dedupe ids, turn counter, open burst)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from pydantic import BaseModel, Field, field_validator

#: Characters of a remembered message id: its fingerprint, :func:`fingerprint`.
FINGERPRINT_CHARS = 11


def fingerprint(message_id: str) -> str:
    """The 11 characters the guard remembers for ``message_id``: the URL-safe base64 of its
    64-bit BLAKE2b digest (``hashlib.blake2b(digest_size=8)``, the padding dropped).

    Two of a chat's last 500 ids share a fingerprint with a probability near 500**2 / 2**65
    (about 7e-15); then the later message would be taken for a duplicate.
    """
    digest = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return base64.urlsafe_b64encode(digest)[:FINGERPRINT_CHARS].decode("ascii")


class PendingBurst(BaseModel):
    """Messages waiting for the chat to go quiet, as InboundMessage JSON dicts."""

    messages: list[dict[str, Any]] = Field(default_factory=list)
    due_at: float = 0.0
    generation: int = 0


class GuardState(BaseModel):
    """One chat's guard memory: the message ids seen, the next turn's ``seq``, the open
    burst and the generation counter that tells a burst's ticks apart.

    ``seen`` holds the :func:`fingerprint` of each remembered id, oldest first, one string
    of ``FINGERPRINT_CHARS`` characters an id. The whole state goes to the changelog on every
    inbound message, so a chat's full window of 500 ids (WABOT_DEDUPE_WINDOW) costs 5.5 KB a
    message instead of the ids' own 12-18 KB, and one string in memory instead of 500.
    A state written before (``seen`` a list of ids) is read into fingerprints.
    """

    seen: str = ""
    next_seq: int = 0
    pending: PendingBurst | None = None
    generation: int = 0

    @field_validator("seen", mode="before")
    @classmethod
    def _fingerprints(cls, value: Any) -> Any:
        if isinstance(value, list):  # written by a version that kept the ids themselves
            return "".join(fingerprint(str(v)) for v in value)
        if isinstance(value, str) and len(value) % FINGERPRINT_CHARS:
            raise ValueError(f"seen: not a string of {FINGERPRINT_CHARS}-character fingerprints")
        return value

    def has_seen(self, message_id: str) -> bool:
        """Whether ``message_id`` is one of the remembered ids."""
        wanted = fingerprint(message_id)
        at = self.seen.find(wanted)
        while at != -1:
            if at % FINGERPRINT_CHARS == 0:  # not a match across two fingerprints
                return True
            at = self.seen.find(wanted, at + 1)
        return False

    def remember(self, message_id: str, limit: int) -> None:
        """Remember ``message_id``, forgetting the oldest beyond ``limit`` ids."""
        seen = self.seen + fingerprint(message_id)
        excess = len(seen) - limit * FINGERPRINT_CHARS
        self.seen = seen[excess:] if excess > 0 else seen

    def edit_pending(self, message_id: str, body: str) -> bool:
        """Give message ``message_id`` of the open burst its edited ``body``.

        False (and nothing changes) when the message is not waiting in the open burst:
        it was answered already, or never joined a burst. The burst's due time stays: an
        edit changes what is said, it is not a new message.
        """
        if self.pending is None:
            return False
        for message in self.pending.messages:
            if message.get("message_id") == message_id:
                message["body"] = body
                return True
        return False

    def revoke_pending(self, message_id: str) -> bool:
        """Take message ``message_id`` out of the open burst (deleted for everyone).

        False when it is not waiting there. A burst left empty is closed without a turn
        (its timer's tick then finds nothing to close).
        """
        if self.pending is None:
            return False
        kept = [m for m in self.pending.messages if m.get("message_id") != message_id]
        if len(kept) == len(self.pending.messages):
            return False
        self.pending.messages = kept
        if not kept:
            self.pending = None
        return True


def guard_state_table(app: Any, partitions: int) -> Any:
    return app.Table(
        "guard_state",
        default=None,
        partitions=partitions,
        key_type=str,
        help="Per chat: recent message ids, next turn number, the open burst.",
    )
