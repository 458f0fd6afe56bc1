"""Why a turn of a replay run has a result on one side only, in words.

A turn exists on one side only when the live bot answered messages the replay did not, or
the other way round. The run folder keeps what each side did with the messages besides its
results, and :func:`missing_reason` reads the first thing that explains the missing side:

- ``messages.jsonl``: the messages fed to the replay (``chat_id``, ``message_id``, ``event``,
  ``received_at``), one JSON object a line; a live turn whose messages are not there is "not
  in the recording's range";
- ``controls.jsonl``: the operator controls fed to the replay (``ControlInput`` lines: Kafka
  timestamp, key, value), which tell an operator's pause from an owner takeover's;
- ``decisions.jsonl`` and ``original_decisions.jsonl``: each side's ``GuardDecision`` records
  (why a message got no answer: "paused by operator in the original", "over the per-chat
  rate limit in the replay", ...);
- ``turns.jsonl`` and ``original_turns.jsonl``: each side's turns (a side that made the turn
  but has no reply for it, or put its messages into other turns).

A folder without some of these files (written by an older version) gives the reasons it can.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from schemas import ChatControl, GuardDecision, Turn

__all__ = [
    "CONTROLS_FILE",
    "DECISIONS_FILES",
    "MESSAGES_FILE",
    "ORIGINAL_TURNS_FILE",
    "Evidence",
    "Side",
    "load_evidence",
    "missing_reason",
]

Side = Literal["original", "replayed"]

MESSAGES_FILE = "messages.jsonl"
CONTROLS_FILE = "controls.jsonl"
ORIGINAL_TURNS_FILE = "original_turns.jsonl"
DECISIONS_FILES: dict[Side, str] = {
    "original": "original_decisions.jsonl",
    "replayed": "decisions.jsonl",
}

#: How each side is named at the end of a reason.
_IN: dict[Side, str] = {"original": "in the original", "replayed": "in the replay"}

#: A guard decision's reason as words (``paused`` is worked out: :func:`_paused`).
_PHRASES: dict[str, str] = {
    "owner_takeover": "dropped when the owner took over",
    "own_message": "the bot's own message",
    "duplicate": "a duplicate",
    "ciphertext": "not decrypted",
    "status_broadcast": "a status post",
    "newsletter": "a newsletter post",
    "too_old": "too old when received",
    "blocked": "a blocked chat",
    "not_allowed": "a chat not on the allow list",
    "disabled": "switched off by an operator's profile",
    "system_message": "a system message",
    "group_not_addressed": "not addressed to the bot in the group",
    "unreadable": "not readable for the bot",
    "empty": "empty",
    "rate_limited_chat": "over the per-chat rate limit",
    "rate_limited_sender": "over the per-sender daily limit",
    "token_budget": "over the daily token budget",
    "loop_guard": "stopped by the loop guard",
    "edited_in_burst": "an edit",
    "revoked_in_burst": "revoked before the answer",
    "edited_after_answer": "an edit",
    "revoked_after_answer": "a revoke",
    "reaction": "a reaction",
}


@dataclass
class Evidence:
    """What a run folder says about both sides besides their results.

    ``replayed_ids``: the message ids fed to the replay (None: unknown). ``controls``: the
    controls fed, as (Kafka time, control), by time. ``decisions``: per side, message id ->
    its decisions. ``takeovers``: per side, chat id -> times the owner took over (the owner's
    message's ``received_at``). ``turns``: per side, turn id -> turn; ``message_turns``: per
    side, message id -> the turn it is in.
    """

    replayed_ids: set[str] | None = None
    controls: list[tuple[datetime, ChatControl]] = field(default_factory=list)
    decisions: dict[Side, dict[str, list[GuardDecision]]] = field(
        default_factory=lambda: {"original": {}, "replayed": {}}
    )
    takeovers: dict[Side, dict[str, list[datetime]]] = field(
        default_factory=lambda: {"original": {}, "replayed": {}}
    )
    turns: dict[Side, dict[str, Turn]] = field(
        default_factory=lambda: {"original": {}, "replayed": {}}
    )
    message_turns: dict[Side, dict[str, Turn]] = field(
        default_factory=lambda: {"original": {}, "replayed": {}}
    )

    def add_turns(self, side: Side, turns: Iterable[Turn]) -> None:
        """Know ``turns`` as made by ``side``."""
        for turn in turns:
            self.turns[side].setdefault(turn.turn_id, turn)
            for message_id in turn.message_ids:
                self.message_turns[side].setdefault(message_id, turn)


def _lines(path: Path) -> Iterable[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_evidence(folder: Path, replayed_turns: Iterable[Turn]) -> Evidence:
    """Read the run folder's evidence (see the module doc); lines that do not parse are
    skipped, absent files are read as empty (``replayed_ids`` None without messages.jsonl).
    ``replayed_turns`` are the turns of ``turns.jsonl``, read by the caller."""
    evidence = Evidence()
    if (folder / MESSAGES_FILE).exists():
        evidence.replayed_ids = set()
        for line in _lines(folder / MESSAGES_FILE):
            try:
                evidence.replayed_ids.add(str(json.loads(line)["message_id"]))
            except (ValueError, KeyError, TypeError):
                continue
    for line in _lines(folder / CONTROLS_FILE):
        try:
            data = json.loads(line)
            control = ChatControl.model_validate_json(data["value"])
            at = datetime.fromtimestamp(int(data["timestamp_ms"]) / 1000, UTC)
        except (ValueError, KeyError, TypeError, ValidationError):
            continue
        evidence.controls.append((at, control))
    evidence.controls.sort(key=lambda entry: entry[0])
    for side, name in DECISIONS_FILES.items():
        groups: dict[tuple[str, datetime | None], list[datetime]] = {}
        for line in _lines(folder / name):
            try:
                decision = GuardDecision.model_validate_json(line)
            except ValidationError:
                continue
            evidence.decisions[side].setdefault(decision.message_id, []).append(decision)
            if decision.reason == "owner_takeover":
                # The owner's message and the messages it dropped share one paused_until;
                # the owner's is the last of them.
                groups.setdefault((decision.chat_id, decision.paused_until), []).append(
                    decision.received_at
                )
        for (chat, _), times in groups.items():
            evidence.takeovers[side].setdefault(chat, []).append(max(times))
    evidence.add_turns("replayed", replayed_turns)
    original_turns = []
    for line in _lines(folder / ORIGINAL_TURNS_FILE):
        try:
            original_turns.append(Turn.model_validate_json(line))
        except ValidationError:
            continue
    evidence.add_turns("original", original_turns)
    return evidence


def missing_reason(turn: Turn, missing: Side, evidence: Evidence) -> str:
    """Why ``missing`` has no result for ``turn`` (a turn of the other side, or of the
    replay's turns), e.g. ``"not in the recording's range"`` or ``"paused by operator in
    the original"``."""
    where = _IN[missing]
    if turn.turn_id in evidence.turns[missing]:
        return f"made {where}, but no reply for it is recorded"
    if missing == "replayed" and evidence.replayed_ids is not None:
        fed = sum(1 for m in turn.message_ids if m in evidence.replayed_ids)
        if fed == 0:
            return "not in the recording's range"
        if fed < len(turn.message_ids):
            return (
                f"partly outside the recording's range ({fed} of {len(turn.message_ids)} "
                "messages replayed)"
            )
    for message_id in turn.message_ids:
        decisions = evidence.decisions[missing].get(message_id, [])
        decision = next((d for d in decisions if d.reason != "duplicate"), None)
        if decision is None and decisions:
            decision = decisions[0]
        if decision is not None:
            return f"{_phrase(decision, missing, evidence)} {where}"
    others = sorted(
        {
            other.seq
            for m in turn.message_ids
            if (other := evidence.message_turns[missing].get(m)) is not None
        }
    )
    if others:
        listed = ", ".join(str(seq) for seq in others)
        return f"its messages are in other turns {where} (seq {listed})"
    if missing == "original":
        return "no trace of its messages in the original (not read by the live bot yet?)"
    return "no trace of its messages in the replay"


def _phrase(decision: GuardDecision, side: Side, evidence: Evidence) -> str:
    if decision.reason == "paused":
        return _paused(decision.chat_id, decision.received_at, side, evidence)
    return _PHRASES.get(decision.reason, decision.reason.replace("_", " "))


def _paused(chat: str, at: datetime, side: Side, evidence: Evidence) -> str:
    """What paused ``chat`` at ``at`` on ``side``: the last pause, resume or takeover before."""
    events: list[tuple[datetime, str]] = [
        (when, control.action)
        for when, control in evidence.controls
        if control.chat_id == chat and control.action in ("pause", "resume") and when <= at
    ]
    events += [(when, "takeover") for when in evidence.takeovers[side].get(chat, []) if when <= at]
    last = max(events, default=None, key=lambda event: event[0])
    if last is not None and last[1] == "pause":
        return "paused by operator"
    if last is not None and last[1] == "takeover":
        return "paused after the owner took over"
    return "paused (by a pause or takeover before the recording)"
