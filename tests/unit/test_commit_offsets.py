"""The worker's consumer never commits past a record still being worked on.

Stages that answer many chats at once finish a partition's records out of order; the offset
committed must stay at the first unfinished one, or a crash loses it. Faust's own check
misses a gap of one record and is skipped before the first commit (pipeline/kafka/transport.py).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from faust.types import TP, Message

from pipeline.application.wiring import create_app
from pipeline.config.settings import Settings

TOPIC = "t.commit-offsets"


def _offsets(committed: int | None, acked: list[int], unacked: list[int]) -> int | None:
    async def run() -> int | None:
        app = create_app(Settings(app_id=f"commit-{uuid.uuid4().hex[:8]}"))
        consumer = app.consumer
        app.topics._acking_topics.add(TOPIC)
        tp = TP(TOPIC, 0)
        messages = {
            offset: Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None)
            for offset in sorted(acked + unacked)
        }
        for message in messages.values():
            consumer.track_message(message)
        consumer._committed_offset[tp] = committed
        for offset in acked:
            message = messages[offset]
            message.acked = False
            consumer.ack(message)
        # What a commit round asks (Consumer.commit -> _filter_committable_offsets).
        result: int | None = consumer._filter_committable_offsets([tp]).get(tp)
        return result

    return asyncio.run(run())


@pytest.mark.parametrize("committed", [10, None], ids=["after-a-commit", "before-any-commit"])
def test_one_unfinished_record_holds_the_commit(committed: int | None) -> None:
    # 10 is still being answered; 11 and 12 (other chats) are done.
    assert _offsets(committed, acked=[11, 12], unacked=[10]) is None


def test_finished_records_are_committed_up_to_the_first_unfinished_one() -> None:
    assert _offsets(10, acked=[10, 11, 13], unacked=[12]) == 12
    assert _offsets(10, acked=[10, 11, 12], unacked=[]) == 13
