"""Replays of conversations an operator steered: pauses, resumes, profiles, owner takeovers.

One recording for the module, answered live by a worker with the LLM stand-in on Apache
Kafka: 24 chats over 4 partitions, where an operator pauses some chats, pauses and later
resumes others, sets a persona in some (after their burst was due, so the turn before it is
answered with the old prompt), sets the account's system prompt for every chat, and the owner
takes over some chats from the phone (two of them resumed by the operator afterwards). Each
control falls inside other chats' open bursts of the same partitions, so a replay that
closed bursts at a control would split them. Each test runs ``faust -A pipeline replay`` as a
user would (a subprocess) and reads what it left.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.replay.records import ControlInput
from pipeline.replay.report.html import render_html
from pipeline.replay.report.markdown import render_markdown
from pipeline.replay.report.run_folder import load_run
from pipeline.testing.workers import FAUST
from schemas import ChatControl, GuardDecision, InboundMessage, LLMResult, Turn
from tests.conftest import REPO, Broker
from tests.conversation import ACCOUNT, Conversation, inbound

PARTITIONS = 4
CHATS = [f"4917500{i:05d}@c.us" for i in range(24)]
PAUSED = CHATS[0:4]  # paused by the operator for 10 minutes: quiet from then on
RESUMED = CHATS[4:8]  # paused, then resumed: one message unanswered, the next answered
TAKEOVER = CHATS[8:12]  # the owner writes from the phone: the bot pauses itself there
TAKEOVER_RESUMED = TAKEOVER[:2]  # ... and the operator resumes two of them
PROFILED = CHATS[12:16]  # a persona, set after their phase-3 burst was due
QUIET_S = 1.0
GAP_S = QUIET_S * 2.5  # between phases: every burst is due before the next phase


def expected_live_turns() -> int:
    turns = 0
    for chat in CHATS:
        if chat in PAUSED:
            turns += 2  # phase 1, phase 2 (the message before the pause)
        elif chat in RESUMED:
            turns += 3  # phase 1, phase 2 (before the pause), phase 5 (after the resume)
        elif chat in TAKEOVER:
            # phase 1; phase 2 is dropped by the takeover; phase 5 after a resume
            turns += 2 if chat in TAKEOVER_RESUMED else 1
        else:
            turns += 4  # phases 1, 2 (one burst of two messages), 3, 5
    return turns


class Recording:
    def __init__(self, conv: Conversation, turns: list[dict[str, Any]], phase3: datetime) -> None:
        self.conv = conv
        self.turns = turns  # the live run's turns, in topic order
        self.phase3 = phase3  # just before the phase-3 messages were sent

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str, str, Path | None]:
        """Run a replay to its end: exit code, stdout, stderr and the new run folder."""
        folder = Path(self.conv.env["WABOT_DATA_DIR"]) / "replays"
        before = set(folder.iterdir()) if folder.exists() else set()
        proc = subprocess.run(
            [FAUST, "-A", "pipeline", "replay", *args],
            cwd=REPO,
            env={**os.environ, **self.conv.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        new = sorted(set(folder.iterdir()) - before) if folder.exists() else []
        return proc.returncode, proc.stdout, proc.stderr, (new[0] if new else None)


def _turn_texts(turns: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {t["turn_id"]: (t["chat_id"], t["text"]) for t in turns}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _record(conv: Conversation) -> datetime:
    """Send the conversation; return when phase 3 started (UTC)."""
    producer = await conv.producer()

    async def each_chat(make: Callable[[str], InboundMessage | None]) -> None:
        # Every message is made when it is sent, so received_at is the send time, as the
        # gateway stamps it.
        sent = []
        for chat in CHATS:
            message = make(chat)
            if message is not None:
                sent.append(
                    await producer.send(
                        conv.topics["inbound"],
                        key=chat.encode(),
                        value=message.model_dump_json().encode(),
                    )
                )
        await asyncio.gather(*sent)

    await each_chat(lambda c: inbound(c, f"hi, this is {c[-8:-5]}"))
    await asyncio.sleep(0.2)
    await each_chat(lambda c: inbound(c, "I need help with an order"))
    await asyncio.sleep(GAP_S)
    # Phase 2: the controls come inside every chat's open burst.
    await each_chat(lambda c: inbound(c, f"order {c[-8:-5]} is late"))
    await asyncio.sleep(0.3)
    until = datetime.now(UTC) + timedelta(minutes=10)
    await _controls(
        producer,
        conv,
        [ChatControl(action="pause", chat_id=c, until=until) for c in PAUSED + RESUMED],
    )
    await each_chat(
        lambda c: (
            inbound(c, "I'll take it from here", from_me=True, sender_id=ACCOUNT)
            if c in TAKEOVER
            else None
        )
    )
    await asyncio.sleep(0.3)
    await each_chat(lambda c: None if c in TAKEOVER else inbound(c, "it was due on monday"))
    await asyncio.sleep(GAP_S)
    # Phase 3: unanswered where paused (by the operator or by the owner's takeover).
    phase3 = datetime.now(UTC)
    await each_chat(lambda c: inbound(c, "any news?"))
    await asyncio.sleep(GAP_S)
    # Live, every turn so far is answered before the profiles come (a slow machine would
    # otherwise answer some with the new profile: a live race, not the replay's).
    phase5 = len(CHATS) - len(PAUSED) - len(TAKEOVER) + len(TAKEOVER_RESUMED)
    answered = expected_live_turns() - phase5
    replies = await conv.collect("outbound", lambda r: len(r) >= answered, timeout=60)
    assert len(replies) == answered
    # Phase 4: resumes, personas, the account's system prompt; then phase 5 at once.
    await _controls(
        producer,
        conv,
        [ChatControl(action="resume", chat_id=c) for c in RESUMED + TAKEOVER_RESUMED]
        + [ChatControl(action="profile", chat_id=c, persona="You are a florist.") for c in PROFILED]
        + [ChatControl(action="account_profile", account_id=ACCOUNT, persona="You sell shoes.")],
    )
    await asyncio.sleep(0.3)
    await each_chat(lambda c: inbound(c, "thanks, bye"))
    return phase3


async def _controls(
    producer: AIOKafkaProducer, conv: Conversation, controls: list[ChatControl]
) -> None:
    """Produce ``controls`` as the operator API does: a chat's keyed by it, an account's to
    every partition."""
    sent = []
    for control in controls:
        value, key = control.model_dump_json().encode(), control.key.encode()
        partitions: list[int | None] = (
            list(range(PARTITIONS)) if control.action == "account_profile" else [None]
        )
        for partition in partitions:
            sent.append(
                await producer.send(
                    conv.topics["control"], key=key, value=value, partition=partition
                )
            )
    await asyncio.gather(*sent)


@pytest.fixture(scope="module")
def recording(
    kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recording]:
    conv = Conversation(
        kafka_broker,
        tmp_path_factory.mktemp("replay-controls"),
        WABOT_BURST_QUIET_S=str(QUIET_S),
        WABOT_TOPIC_PARTITIONS=str(PARTITIONS),
    )
    conv.start_worker()
    expected = expected_live_turns()

    async def run() -> tuple[list[dict[str, Any]], datetime]:
        phase3 = await _record(conv)
        await conv.collect("outbound", lambda r: len(r) >= expected, timeout=120, settle=3.0)
        turns = await conv.collect("turns", lambda r: len(r) >= expected, timeout=10)
        await conv.stop_clients()
        return turns, phase3

    try:
        turns, phase3 = asyncio.run(run())
        assert len(turns) == expected, "the live run did not make the turns it should"
        yield Recording(conv, turns, phase3)
    finally:
        conv.close()


@pytest.mark.integration
def test_controls_and_takeovers_replay_as_they_happened(recording: Recording) -> None:
    code, out, err, folder = recording.run("--since", "-30m")
    assert code == 0, err
    assert folder is not None and (folder / "turns.jsonl").exists(), (out, err)
    # The same turns: no answer where the live bot was paused, the same bursts around each
    # control, the same turn after a resume.
    assert _turn_texts(_jsonl(folder / "turns.jsonl")) == _turn_texts(recording.turns)
    run = load_run(folder)
    assert (run.missing("original"), run.missing("replayed")) == (0, 0)
    assert run.compared == len(recording.turns)
    # The same prompts: the same windows after a resume, the persona and the account's
    # system prompt from the same turn on (the stand-in echoes the message count and a hash
    # of the system prompt).
    assert run.changed == 0, [
        (p.original.reply, p.replayed.reply) for p in run.pairs if p.changed and p.original
    ]
    state = json.loads((folder / "run.json").read_text())
    # pauses, resumes, personas, and the account's profile once per partition
    controls = len(PAUSED + RESUMED) + len(RESUMED + TAKEOVER_RESUMED) + len(PROFILED) + PARTITIONS
    messages = 6 * len(CHATS)  # 2 + 2 (or 1 and the owner's) + 1 + 1
    assert state["counts"]["controls"] == controls
    assert state["counts"]["inbound_records"] == messages
    assert f"{messages + controls} records ({messages} messages, {controls} controls)" in out


@pytest.mark.integration
def test_a_range_that_cuts_the_recording_says_why_turns_are_on_one_side_only(
    recording: Recording,
) -> None:
    since = recording.phase3.strftime("%Y-%m-%dT%H:%M:%S.%f")
    code, _, err, folder = recording.run("--since", since)
    assert code == 0, err
    assert folder is not None
    run = load_run(folder)
    before = [
        t
        for t in recording.turns
        if datetime.fromisoformat(t["last_received_at"]) < recording.phase3
    ]
    # Controls before the range still hold in it (the operator's pauses are replayed), but
    # the owner's messages of phase 2 are not in it: the replay answers those chats.
    after_takeover = len(TAKEOVER) + len(TAKEOVER) - len(TAKEOVER_RESUMED)
    assert run.one_side_only() == [
        ("replayed", "not in the recording's range", len(before)),
        ("original", "paused after the owner took over in the original", after_takeover),
    ]
    markdown = (folder / "report.md").read_text()
    assert "## One side only" in markdown
    assert "paused after the owner took over in the original" in markdown
    assert "not in the recording&#x27;s range" in (folder / "report.html").read_text()


@pytest.mark.integration
def test_a_limit_set_for_the_replay_is_the_reason_it_did_not_answer(recording: Recording) -> None:
    chat = CHATS[-1]  # four turns within seconds
    code, _, err, folder = recording.run("--chat", chat, "--set", "rate_chat_per_minute=1")
    assert code == 0, err
    assert folder is not None
    one_side = load_run(folder).one_side_only()
    assert [(side, reason) for side, reason, _ in one_side] == [
        ("replayed", "over the per-chat rate limit in the replay")
    ]
    assert one_side[0][2] >= 2  # at most one answer a minute, the recording spans under two


# -- reasons from a run folder written by hand --------------------------------------------

START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
OPS = "4930000000000@c.us"


def _turn(chat: str, seq: int, *message_ids: str, minute: int = 0) -> Turn:
    at = START + timedelta(minutes=minute)
    return Turn(
        turn_id=f"turn-{message_ids[0]}",
        chat_id=chat,
        account_id=OPS,
        sender_id=chat,
        seq=seq,
        message_ids=list(message_ids),
        text=f"text of {', '.join(message_ids)}",
        is_group=False,
        first_received_at=at,
        last_received_at=at,
    )


def _result(turn: Turn) -> LLMResult:
    return LLMResult(turn=turn, reply=f"reply to {turn.turn_id}", parts=["-"], status="ok")


def _decision(
    chat: str, message_id: str, reason: Any, minute: float, **extra: Any
) -> GuardDecision:
    return GuardDecision(
        decision_id=f"d-{message_id}-{reason}",
        account_id=OPS,
        chat_id=chat,
        sender_id=extra.pop("sender_id", chat),
        message_id=message_id,
        type="chat",
        reason=reason,
        received_at=START + timedelta(minutes=minute),
        **extra,
    )


def _control(control: ChatControl, minute: float, partition: int = 0) -> str:
    at = START + timedelta(minutes=minute)
    return ControlInput(
        partition,
        int(at.timestamp() * 1000),
        control.key.encode(),
        control.model_dump_json().encode(),
    ).to_json()


def _lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


@pytest.mark.unit
def test_every_turn_on_one_side_only_has_its_reason(tmp_path: Path) -> None:
    a, b, c, d = (f"4915{n}0000000@c.us" for n in range(1, 5))
    paused_by_ops = _turn(a, 0, "a1", minute=5)
    paused_by_owner = _turn(b, 0, "b1", minute=5)
    paused_before = _turn(c, 0, "c1", minute=5)
    made_live_unanswered = _turn(d, 0, "d1", minute=1)
    unknown_live = _turn(d, 1, "d2", minute=2)
    made_no_reply = _turn(d, 2, "d3", minute=3)  # in turns.jsonl, original result only
    out_of_range = _turn(a, 1, "a0", minute=-30)
    partly = _turn(b, 1, "b0", "b2", minute=0)
    rate_limited = _turn(c, 1, "c2", minute=6)
    split = _turn(d, 3, "d4", "d5", minute=7)
    split_in_replay = _turn(d, 4, "d5", minute=7)  # replay: d4 alone, d5 its own turn
    replayed_turns = [
        paused_by_ops,
        paused_by_owner,
        paused_before,
        made_live_unanswered,
        unknown_live,
        made_no_reply,
        split_in_replay,
    ]
    original = [out_of_range, partly, rate_limited, split, made_no_reply]
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(
        json.dumps({"run_id": "r", "created_at": START.isoformat(), "counts": {"controls": 2}})
    )
    _lines(folder / "turns.jsonl", [t.model_dump_json() for t in replayed_turns])
    _lines(folder / "original.jsonl", [_result(t).model_dump_json() for t in original])
    replayed_results = [t for t in replayed_turns if t is not made_no_reply]
    _lines(folder / "replayed.jsonl", [_result(t).model_dump_json() for t in replayed_results])
    fed = ["a1", "b1", "b2", "c1", "c2", "d1", "d2", "d3", "d4", "d5"]
    _lines(
        folder / "messages.jsonl",
        [json.dumps({"chat_id": "-", "message_id": m, "event": "message"}) for m in fed],
    )
    until = START + timedelta(hours=1)
    _lines(
        folder / "controls.jsonl",
        [
            _control(ChatControl(action="pause", chat_id=a, until=until), 4),
            _control(ChatControl(action="pause", chat_id=b, until=until), 1),
            _control(ChatControl(action="resume", chat_id=c), 4),
        ],
    )
    live_decisions = [
        _decision(a, "a1", "paused", 5),
        # The owner took over b after the operator's pause: the takeover pauses it now.
        _decision(b, "b-owner", "owner_takeover", 4, sender_id=OPS, paused_until=until),
        _decision(b, "b1", "paused", 5),
        _decision(c, "c1", "paused", 5),
    ]
    _lines(folder / "original_decisions.jsonl", [x.model_dump_json() for x in live_decisions])
    _lines(folder / "original_turns.jsonl", [made_live_unanswered.model_dump_json()])
    replay_decisions = [_decision(c, "c2", "rate_limited_chat", 6)]
    _lines(folder / "decisions.jsonl", [x.model_dump_json() for x in replay_decisions])

    run = load_run(folder)
    reasons = {p.turn.turn_id: p.reasons for p in run.pairs}
    assert reasons == {
        paused_by_ops.turn_id: {"original": "paused by operator in the original"},
        paused_by_owner.turn_id: {"original": "paused after the owner took over in the original"},
        paused_before.turn_id: {
            "original": "paused (by a pause or takeover before the recording) in the original"
        },
        made_live_unanswered.turn_id: {
            "original": "made in the original, but no reply for it is recorded"
        },
        unknown_live.turn_id: {
            "original": "no trace of its messages in the original (not read by the live bot yet?)"
        },
        made_no_reply.turn_id: {"replayed": "made in the replay, but no reply for it is recorded"},
        split_in_replay.turn_id: {
            "original": "its messages are in other turns in the original (seq 3)"
        },
        out_of_range.turn_id: {"replayed": "not in the recording's range"},
        partly.turn_id: {
            "replayed": "partly outside the recording's range (1 of 2 messages replayed)"
        },
        rate_limited.turn_id: {"replayed": "over the per-chat rate limit in the replay"},
        split.turn_id: {"replayed": "its messages are in other turns in the replay (seq 4)"},
    }
    assert all(p.reasons.get(p.one_side_only) for p in run.pairs if p.one_side_only)
    assert sum(n for *_, n in run.one_side_only()) == len(reasons)
    markdown, page = render_markdown(run), render_html(run)
    assert "| no original result | paused by operator in the original | 1 |" in markdown
    assert "No replayed result: over the per-chat rate limit in the replay." in markdown
    assert "- operator controls: 2" in markdown
    assert "no original result for this turn: " in page
    assert '<span class="why">paused by operator in the original</span>' in page


@pytest.mark.unit
def test_a_run_folder_without_the_records_of_its_input_still_gives_a_reason(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"run_id": "r", "created_at": START.isoformat()}))
    only_live = _turn("4915100000000@c.us", 0, "m1")
    only_replayed = _turn("4915100000000@c.us", 1, "m2")
    _lines(folder / "turns.jsonl", [only_replayed.model_dump_json()])
    _lines(folder / "original.jsonl", [_result(only_live).model_dump_json()])
    _lines(folder / "replayed.jsonl", [_result(only_replayed).model_dump_json()])
    run = load_run(folder)
    assert {p.turn.turn_id: p.reasons for p in run.pairs} == {
        only_replayed.turn_id: {
            "original": "no trace of its messages in the original (not read by the live bot yet?)"
        },
        only_live.turn_id: {"replayed": "no trace of its messages in the replay"},
    }
