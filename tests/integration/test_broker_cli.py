"""The project's own broker commands, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.broker import free_port
from pipeline.testing.workers import FAUST
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _broker(action: str, kind: str, port: int, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WABOT_DATA_DIR": str(data)}
    return subprocess.run(
        [FAUST, "-A", "pipeline", "broker", action, "--kind", kind, "--port", str(port)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
def test_start_status_stop(kind: str, tmp_path: Path) -> None:
    port = free_port()
    started = _broker("start", kind, port, tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert f"{kind} broker ready on 127.0.0.1:{port}" in started.stdout

        status = _broker("status", kind, port, tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "running on" in status.stdout and "answering metadata" in status.stdout
        assert (tmp_path / kind / f"{kind}.log").exists()

        # Starting again is harmless: it reports the broker that runs.
        again = _broker("start", kind, port, tmp_path)
        assert again.returncode == 0, again.stderr
    finally:
        stopped = _broker("stop", kind, port, tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout
    after = _broker("status", kind, port, tmp_path)
    assert after.returncode == 3 and "not running" in after.stdout


def test_port_in_use_is_one_clear_line(tmp_path: Path, embedded_broker: object) -> None:
    port = int(str(embedded_broker.bootstrap).rsplit(":", 1)[1])
    result = _broker("start", "embedded", port, tmp_path)
    assert result.returncode == 1
    assert "already in use" in result.stderr and str(port) in result.stderr
    assert "Traceback" not in result.stderr
