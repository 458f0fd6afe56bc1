"""The replay's progress counts one unit, records of its input (messages and controls), from
the run's first line to the last state of its bar."""

from __future__ import annotations

import io

import pytest

from pipeline.replay.progress import Progress, records_done
from pipeline.replay.runner import selected_line

pytestmark = pytest.mark.unit

INBOUND, CONTROL = "r-wa.inbound", "r-chat.control"
#: 35 messages and 3 controls over two partitions.
PLANNED = {(INBOUND, 0): 20, (INBOUND, 1): 15, (CONTROL, 0): 2, (CONTROL, 1): 1}


def bar(done: int, total: int) -> str:
    out = io.StringIO()
    progress = Progress("r", out=out, tty=False, every_s=0)
    progress.update(done, total, answered=0, turns=0)
    return progress.line


def test_the_first_line_and_the_bar_count_the_same_records() -> None:
    line = selected_line("r", messages=35, controls=3, chats=3)
    assert "38 records (35 messages, 3 controls) of 3 chats" in line
    # Before the worker commits anything, and while the broker knows one partition only.
    assert records_done(PLANNED, {}) == (0, 38)
    assert records_done(PLANNED, {(INBOUND, 0): 4}) == (4, 38)
    assert " 0/38 records " in bar(*records_done(PLANNED, {}))


def test_done_never_passes_what_is_planned() -> None:
    committed = {(INBOUND, 0): 25, (INBOUND, 1): 15, (CONTROL, 0): 2, (CONTROL, 1): 1}
    assert records_done(PLANNED, committed) == (38, 38)
    assert records_done(PLANNED, {(INBOUND, 0): -1, ("another topic", 0): 9}) == (0, 38)
    line = bar(*records_done(PLANNED, committed))
    assert " 38/38 records " in line and "reading done" in line
