"""A second `make dev` (``python -m pipeline.dev``) on a port that is taken says so in one
line, without a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
            [sys.executable, "-m", "pipeline.dev"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert worker.returncode == 2, worker.stderr[-2000:]
    output = worker.stdout + worker.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if f"port {port}" in line]
    assert len(errors) == 1, output
    assert setting in errors[0] and ("in use" in errors[0] or "cannot serve" in errors[0])


def _free() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
