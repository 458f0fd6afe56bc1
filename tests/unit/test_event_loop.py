"""WABOT_EVENT_LOOP: the loop every `faust -A pipeline` command runs on (pipeline/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = (
    "import asyncio, pipeline\n"
    "pipeline.use_event_loop(pipeline.settings_or_exit().event_loop)\n"
    "from mode.utils.loops import get_event_loop\n"
    "print(type(get_event_loop()).__module__.partition('.')[0])\n"
)


def _loop(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("FAUST_LOOP", "WABOT_EVENT_LOOP")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_uvloop_by_default() -> None:
    assert _loop() == "uvloop"


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"WABOT_EVENT_LOOP": "asyncio"}, "asyncio"), ({"FAUST_LOOP": "aio"}, "asyncio")],
)
def test_asyncio_when_asked(env: dict[str, str], expected: str) -> None:
    assert _loop(**env) == expected


def test_an_unknown_loop_is_one_line_naming_the_variable() -> None:
    clean = {k: v for k, v in os.environ.items() if k != "WABOT_EVENT_LOOP"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={**clean, "WABOT_EVENT_LOOP": "trio"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "WABOT_EVENT_LOOP" in done.stderr, done.stderr
