"""Replays on Apache Kafka: a recorded conversation rerun through the real pipeline.

One recording for the module: 50 chats with bursts, pauses and owner takeovers, answered
live by a worker with the LLM stand-in, plus a record that never decoded. Each test runs
``faust -A pipeline replay`` as a user would (a subprocess) and reads what it left.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.replay.report.run_folder import load_run
from pipeline.testing.workers import FAUST
from schemas import InboundMessage
from tests.conftest import REPO, Broker
from tests.conversation import ACCOUNT, Conversation, inbound

pytestmark = pytest.mark.integration

CHATS = [f"4917400{i:05d}@c.us" for i in range(50)]
TAKEOVER = set(CHATS[::10])  # the owner answers these from the phone
QUIET_S = 1.0


class Recording:
    def __init__(self, conv: Conversation, turns: list[dict[str, Any]]) -> None:
        self.conv = conv
        self.turns = turns  # the live run's turns, in topic order

    def replay(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [FAUST, "-A", "pipeline", "replay", *args],
            cwd=REPO,
            env={**os.environ, **self.conv.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 240) -> tuple[int, str, str, Path | None]:
        """Run a replay to its end: exit code, stdout, stderr and the new run folder."""
        before = set(self.runs())
        proc = self.replay(*args)
        out, err = proc.communicate(timeout=timeout)
        new = sorted(set(self.runs()) - before)
        return proc.returncode, out, err, (new[0] if new else None)

    def runs(self) -> list[Path]:
        folder = Path(self.conv.env["WABOT_DATA_DIR"]) / "replays"
        return list(folder.iterdir()) if folder.exists() else []

    def topics_with(self, prefix: str) -> list[str]:
        async def listed() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.conv.broker.bootstrap)
            await admin.start()
            try:
                return [t for t in await admin.list_topics() if t.startswith(prefix)]
            finally:
                await admin.close()

        return asyncio.run(listed())


def _turn_texts(turns: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {t["turn_id"]: (t["chat_id"], t["text"]) for t in turns}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _record(conv: Conversation) -> None:
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

    await each_chat(lambda c: inbound(c, f"hi, this is {c[-5:]}"))
    await asyncio.sleep(0.2)  # a burst: one turn of two messages
    await each_chat(lambda c: inbound(c, "I need help with an order"))
    await conv.send_raw(CHATS[1].encode(), b"{this never decoded")
    await asyncio.sleep(QUIET_S * 2.5)  # a pause: the next message is a turn of its own
    await each_chat(lambda c: inbound(c, f"order {c[-5:]} is late"))
    await asyncio.sleep(QUIET_S * 2.5)
    await each_chat(
        lambda c: (
            inbound(c, "I'll take it from here", from_me=True, sender_id=ACCOUNT)
            if c in TAKEOVER
            else inbound(c, "thanks, bye")
        )
    )
    await asyncio.sleep(QUIET_S * 2.5)
    # The owner took over these chats: the bot stays quiet there.
    await each_chat(lambda c: inbound(c, "ok, thank you") if c in TAKEOVER else None)


@pytest.fixture(scope="module")
def recording(
    kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recording]:
    conv = Conversation(
        kafka_broker, tmp_path_factory.mktemp("replay"), WABOT_BURST_QUIET_S=str(QUIET_S)
    )
    conv.start_worker()
    expected = 3 * (len(CHATS) - len(TAKEOVER)) + 2 * len(TAKEOVER)

    async def run() -> list[dict[str, Any]]:
        await _record(conv)
        await conv.collect("outbound", lambda r: len(r) >= expected, timeout=120, settle=3.0)
        turns = await conv.collect("turns", lambda r: len(r) >= expected, timeout=10)
        await conv.stop_clients()
        return turns

    try:
        turns = asyncio.run(run())
        assert len(turns) == expected, "the live run did not answer every turn"
        yield Recording(conv, turns)
    finally:
        conv.close()


def test_a_replay_at_full_speed_makes_the_same_turns_and_replies(recording: Recording) -> None:
    outbound_before = asyncio.run(recording.conv.collect("outbound", lambda r: False, timeout=2))
    code, out, err, folder = recording.run("--since", "-30m")
    assert code == 0, err
    assert folder is not None and (folder / "turns.jsonl").exists(), (out, err)
    replayed_turns = _jsonl(folder / "turns.jsonl")
    # Event time: the same bursts and the same takeover pauses as the live run, although
    # the replay reads the whole recording in a fraction of its duration.
    assert _turn_texts(replayed_turns) == _turn_texts(recording.turns)
    run = load_run(folder)
    assert run.compared == len(recording.turns)
    assert run.changed == 0  # the same settings and the stand-in: the same replies
    assert "0 changed" in out
    state = json.loads((folder / "run.json").read_text())
    assert state["status"] == "done"
    assert state["counts"]["dead_letters"] == 1  # the bad record, in the replay's own DLQ
    assert state["counts"]["inbound_records"] == len(CHATS) * 5 - (len(CHATS) - len(TAKEOVER)) + 1
    assert (folder / "report.html").stat().st_size > 0
    assert (folder / "report.md").read_text().count("turn") > 0
    # Nothing of the run is left on the cluster, and the live bot's outbound is untouched.
    assert recording.topics_with(state["app_id"]) == []
    outbound_after = asyncio.run(recording.conv.collect("outbound", lambda r: False, timeout=2))
    assert len(outbound_after) == len(outbound_before)


def test_another_prompt_in_replayed_context_changes_every_reply(
    recording: Recording, tmp_path: Path
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are a pirate. Answer like one.\n")
    chats = sorted(TAKEOVER)[:2] + CHATS[1:3]
    args = ["--context", "replayed", "--set", f"system_prompt=@{prompt}", "--keep"]
    for chat in chats:
        args += ["--chat", chat]
    code, _, err, folder = recording.run(*args)
    assert code == 0, err
    assert folder is not None
    live = {k: v for k, v in _turn_texts(recording.turns).items() if v[0] in chats}
    assert _turn_texts(_jsonl(folder / "turns.jsonl")) == live
    run = load_run(folder)
    assert run.compared == len(live)
    assert run.changed == len(live)  # the stand-in's echo names the system prompt's hash
    state = json.loads((folder / "run.json").read_text())
    assert state["overrides"] == {"system_prompt": "You are a pirate. Answer like one."}
    assert recording.topics_with(state["app_id"])  # --keep
    cleanup = recording.replay("--cleanup", state["run_id"])
    cleanup.communicate(timeout=60)
    assert cleanup.returncode == 0
    assert recording.topics_with(state["app_id"]) == []


def test_an_llm_that_fails_gives_fallback_turns_the_report_counts(recording: Recording) -> None:
    chats = CHATS[3:5]
    args = ["--set", "llm_base_url=http://127.0.0.1:9/v1", "--set", "llm_retries=0"]
    for chat in chats:
        args += ["--chat", chat]
    code, out, err, folder = recording.run(*args)
    assert code == 0, err
    assert folder is not None
    run = load_run(folder)
    turns = [t for t in recording.turns if t["chat_id"] in chats]
    assert run.compared == len(turns) == 6
    replayed = run.totals("replayed", None)
    assert replayed.fallbacks == len(turns)
    assert run.totals("original", None).fallbacks == 0
    assert f"fallbacks 0 → {len(turns)}" in out


def test_ctrl_c_keeps_the_run_for_resume(recording: Recording) -> None:
    recording.conv.standin.set_failures([], latency_s=0.3)  # slow enough to interrupt
    try:
        before = set(recording.runs())
        proc = recording.replay("--since", "-30m")
        deadline = time.monotonic() + 120
        folder = None
        while time.monotonic() < deadline and folder is None:
            new = set(recording.runs()) - before
            if new and (new_folder := next(iter(new))).joinpath("worker.log").exists():
                log = new_folder.joinpath("worker.log").read_text(errors="replace")
                if "worker ready in" in log:
                    folder = new_folder
            time.sleep(0.5)
        assert folder is not None, "the replay never started its worker"
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, err
        state = json.loads((folder / "run.json").read_text())
        assert state["status"] == "interrupted"
        assert f"--resume {state['run_id']}" in out
        assert recording.topics_with(state["app_id"])  # left for --resume
    finally:
        recording.conv.standin.set_failures([], latency_s=0.0)
    resumed = recording.replay("--resume", state["run_id"])
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert _turn_texts(_jsonl(folder / "turns.jsonl")) == _turn_texts(recording.turns)
    assert load_run(folder).changed == 0
    assert recording.topics_with(state["app_id"]) == []


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--chat", "4917499999999@c.us"], {}, "no record of"),
        (["--since", "-30m", "--until", "-29m59s"], {}, "is not a time"),
        (["--since", "2020-01-01", "--until", "2020-01-02"], {}, "matches the selection"),
        (["--set", "llm_temperature=hot"], {}, "WABOT_LLM_TEMPERATURE"),
        (["--set", "app_id=x"], {}, "set by the replay itself"),
        ([], {"WABOT_BROKER_URL": "kafka://127.0.0.1:1"}, "not reachable"),
    ],
)
def test_a_bad_selection_is_one_clear_line(
    recording: Recording, args: list[str], env: dict[str, str], says: str
) -> None:
    before = set(recording.runs())
    proc = recording.replay(*args, env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("replay: ") and says in lines[0], err
    # Nothing is left behind: no run folder, no topic of a namespace.
    assert set(recording.runs()) == before
    assert recording.topics_with(f"{recording.conv.app_id}-replay-") == []
