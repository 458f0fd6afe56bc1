"""A broker outage reads as one WARNING, a summary every 30 s and one INFO when it is back;
the worker answers again afterwards.

Reproduced: a 20 s outage of the broker under a worker wrote ~6,000 aiokafka ERROR lines
in 29 s (16,000 in a minute with the gateway and the archive consumer running).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, own_kafka
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration

OUTAGE_S = 20


def _lines_since(log: Path, offset: int) -> list[str]:
    return log.read_bytes()[offset:].decode(errors="replace").splitlines()


async def test_an_outage_is_one_warning_a_summary_and_one_line_when_it_is_back(
    tmp_path: Path,
) -> None:
    broker = own_kafka(tmp_path / "kafka")
    info = await broker.start()
    conv = Conversation(Broker("kafka", info.bootstrap), tmp_path)
    try:
        worker = conv.start_worker()
        chat = "4915111111111@c.us"
        await conv.send(inbound(chat, "before"))
        await conv.collect("outbound", lambda rs: len(rs) >= 1, timeout=90)
        await conv.stop_clients()

        before = len(worker.log.read_bytes())
        broker.stop()
        began = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        await broker.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(" is back after " in line for line in _lines_since(worker.log, before)):
                break
            await asyncio.sleep(0.5)
        lasted = time.monotonic() - began
        lines = _lines_since(worker.log, before)
        back = [line for line in lines if " is back after " in line]
        assert back and " INFO " in back[0], "\n".join(lines[-60:])

        errors = [line for line in lines if " ERROR " in line]
        warnings = [line for line in lines if " WARNING " in line]
        assert not errors, "\n".join(errors[:20])
        assert warnings and "lost the connection to the broker at" in warnings[0], warnings[:5]
        # One when it is lost, then at most one a 30 s while it lasts (and the watch's
        # last few seconds of quiet before it says the broker is back).
        assert len(warnings) <= 1 + int(lasted // 30) + 1, "\n".join(warnings)
        assert all("unreachable for" in w for w in warnings[1:]), "\n".join(warnings)

        # The worker runs on: a message after the outage is answered.
        await conv.send(inbound(chat, "after"))
        out = await conv.collect("outbound", lambda rs: len(rs) >= 2, timeout=120)
        assert "after" in out[-1]["text"], out
    finally:
        await conv.stop_clients()
        conv.close()
        broker.stop()
