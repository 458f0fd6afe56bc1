"""A second worker on a port that is taken says so in one line (a second `make dev`)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pipeline.testing.workers import FAUST
from tests.conftest import REPO


@pytest.mark.parametrize("setting", ["WABOT_WEB_PORT", "WABOT_LOOKALIKE_PORT"])
def test_a_taken_port_is_one_line_naming_the_setting(setting: str, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web_port = port if setting == "WABOT_WEB_PORT" else _free()
        env = {
            **os.environ,
            "WABOT_DATA_DIR": str(tmp_path),
            "WABOT_BROKER_URL": "kafka://127.0.0.1:1",
            "WABOT_WEB_PORT": str(web_port),
            "WABOT_GATEWAY_IN_WORKER": "true",
            "WABOT_GATEWAY_LOOKALIKE": "true",
            "WABOT_LOOKALIKE_PORT": str(port if setting == "WABOT_LOOKALIKE_PORT" else _free()),
        }
        worker = subprocess.run(
            [FAUST, "-A", "pipeline", "worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert worker.returncode == 2, worker.stderr[-2000:]
    lines = [line for line in (worker.stdout + worker.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"port {port} ({setting})" in lines[0] and "in use" in lines[0]


def _free() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
