"""Stopping a worker always ends, even when its broker is gone.

A user whose broker died presses Ctrl-C (or systemd sends SIGTERM): Faust's clean stop
waits for the broker to flush and commit, forever. The worker must give up after
``WABOT_SHUTDOWN_TIMEOUT_S`` with a line that says what happened, and a second Ctrl-C
must end it at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from pipeline.broker import EmbeddedBroker, free_port
from pipeline.testing.workers import WorkerProcess
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _worker_on_own_broker(tmp_path: Path, timeout_s: float) -> tuple[EmbeddedBroker, WorkerProcess]:
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "broker")
    info = asyncio.run(broker.start())
    worker = WorkerProcess(
        {
            "WABOT_BROKER_URL": f"kafka://{info.bootstrap}",
            "WABOT_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # the worker needs one; none is called
            "WABOT_APP_ID": f"shutdown-{tmp_path.name}",
            "WABOT_DATA_DIR": str(tmp_path / "data"),
            "WABOT_TOPIC_PARTITIONS": "2",
            "WABOT_SHUTDOWN_TIMEOUT_S": str(timeout_s),
        },
        tmp_path / "worker.log",
        REPO,
    ).start()
    return broker, worker


@pytest.mark.parametrize("second_signal", [False, True], ids=["watchdog", "second-ctrl-c"])
def test_stop_ends_when_the_broker_is_gone(tmp_path: Path, second_signal: bool) -> None:
    broker, worker = _worker_on_own_broker(tmp_path, timeout_s=6)
    try:
        worker.wait_ready()
        broker.stop()
        assert worker.proc is not None
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGINT)
        if second_signal:
            time.sleep(1)
            worker.proc.send_signal(signal.SIGINT)
        returncode = worker.proc.wait(40)
        took = time.monotonic() - started
        log = worker.log.read_text(errors="replace")
    finally:
        worker.stop(signal.SIGKILL)
        broker.stop()
    if second_signal:
        assert took < 5, f"a second Ctrl-C took {took:.1f}s to end the worker"
        assert "second SIGINT: stopping without waiting" in log
    else:
        assert took < 6 + 5, f"the worker took {took:.1f}s to stop (timeout 6s)"
    if returncode != 0:
        # It gave up: the reason, with the broker's address, is in the log.
        assert returncode == 1
        assert second_signal or "did not stop within 6s (is the broker at 127.0.0.1:" in log
