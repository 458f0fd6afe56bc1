"""Real worker processes for tests: `faust -A pipeline worker`, the gateway or `make dev`'s
``python -m pipeline.dev``, in a subprocess (in a process group of its own, as a terminal
starts a foreground command, so a stop can signal the whole group as Ctrl-C does)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.broker import free_port

FAUST = str(Path(sys.executable).with_name("faust"))


class WorkerProcess:
    """One worker with its own web port and log file; env overrides are WABOT_* vars."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        cwd: Path,
        app: str = "pipeline",
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        port = str(self.port)
        self.env = {**os.environ, **env, "WABOT_WEB_PORT": port, "WABOT_GATEWAY_WEB_PORT": port}
        self.app = app
        self.command = command or [FAUST, "-A", app, "worker"]
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                start_new_session=True,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def health(self) -> dict[str, object] | None:
        return self.get_json("/health")

    @property
    def token(self) -> str | None:
        """The bearer token the worker's web views want: the first of WABOT_API_TOKENS, else
        the one it made in ``<WABOT_DATA_DIR>/api-token``."""
        tokens = json.loads(self.env.get("WABOT_API_TOKENS") or "{}")
        if tokens:
            return str(next(iter(tokens.values())))
        made = self.cwd / self.env.get("WABOT_DATA_DIR", ".data") / "api-token"
        return made.read_text().strip() if made.exists() else None

    def get(self, path: str, timeout: float = 10) -> bytes:
        """GET ``path`` of the worker's web server with its token; raises URLError."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())

    def get_json(self, path: str) -> dict[str, object] | None:
        """GET a JSON view of the worker; None while it does not answer."""
        try:
            return dict(json.loads(self.get(path, timeout=2)))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Poll /health until the worker says ready; return its reported time to ready."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            body = self.health()
            if body and body.get("ready"):
                return float(body["ready_after_s"])  # type: ignore[arg-type]
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, group: bool = False) -> int:
        """Send ``sig`` to the process (``group``: to its whole process group, as a terminal
        sends Ctrl-C) and wait; killed after ``timeout`` s. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""
