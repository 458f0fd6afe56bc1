"""A start of ``make dev`` prints a few lines and a ready block; a clean stop (Ctrl-C in a
terminal: SIGINT to the whole foreground process group, the worker and the Chromium it
drives) logs no ERROR and no WARNING.

Reproduced: SIGINT to a worker with ``WABOT_GATEWAY_IN_WORKER`` and the built-in look-alike
logged ``could not write state to wa.events ... Producer service not yet started`` at ERROR
with a 25-line traceback; SIGINT to the process group logged ``Future exception was never
retrieved ... Connection closed while reading from the driver`` in 2 stops of 3.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.gateway.page import browsers_on
from pipeline.testing.workers import WorkerProcess
from tests.conftest import REPO, Broker
from tests.conversation import Conversation

pytestmark = [pytest.mark.e2e]


def _post(url: str) -> None:
    request = urllib.request.Request(
        url, data=b"{}", headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_sigint_stops_a_gateway_worker_without_errors(
    kafka_broker: Broker, tmp_path: Path, stop: int
) -> None:
    profile = tmp_path / "profile"
    conv = Conversation(
        kafka_broker,
        tmp_path,
        WABOT_GATEWAY_IN_WORKER="true",
        WABOT_GATEWAY_LOOKALIKE="true",
        WABOT_LOOKALIKE_PORT="0",
        WABOT_GATEWAY_NAME="stop",
        WABOT_GATEWAY_PROFILE_DIR=str(profile),
    )
    try:
        worker = WorkerProcess(
            conv.env, tmp_path / "dev.log", cwd=REPO, command=[sys.executable, "-m", "pipeline.dev"]
        ).start()
        conv.workers.append(worker)
        deadline = time.monotonic() + 90
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            status = worker.get_json("/gateway/status") or {}
            if status.get("state") in ("qr", "ready"):
                break
            time.sleep(0.2)
        assert status.get("state") == "qr", status
        _post(str(status["url"]) + "control/scan")  # the phone scans: the page gets ready
        while time.monotonic() < deadline:
            status = worker.get_json("/gateway/status") or {}
            if status.get("state") == "ready":
                break
            time.sleep(0.2)
        assert status.get("state") == "ready", (status, worker.tail())
        time.sleep(1)
        start_log = worker.log.read_text(errors="replace")
        before = len(start_log.encode())
        # A start reads as a person needs it: a few lines, then what to open.
        head, ready, block = start_log.partition("wabot is ready")
        assert ready, start_log[-3000:]
        assert len(head.splitlines()) <= 30, head
        assert f"{status['url']}phone" in block, block
        noisy = [line for line in head.splitlines() if "WARNING" in line or "ERROR" in line]
        assert not noisy, "\n".join(noisy)

        code = worker.stop(signal.SIGINT, timeout=60, group=True)
        stop_log = worker.log.read_bytes()[before:].decode(errors="replace")
        assert code == 0, stop_log[-3000:]
        problems = [
            line
            for line in stop_log.splitlines()
            if any(word in line for word in ("ERROR", "WARNING", "Traceback", "exception"))
        ]
        assert not problems, "\n".join(problems) + "\n" + stop_log[-4000:]
        assert "gateway stop" in stop_log or "Closing event loop" in stop_log, stop_log
        assert not browsers_on(profile), "the gateway's Chromium outlived the worker"
    finally:
        conv.close()
        for pid in browsers_on(profile):
            os.kill(pid, signal.SIGKILL)
