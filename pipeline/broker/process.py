"""Start, find and stop a broker process that the project owns.

A started broker leaves a small JSON *pid file* in the data folder: its PID, address,
command line and log path. ``status`` and ``stop`` read it and check that the PID still
runs the command we started (``/proc/<pid>/cmdline``), so a recycled PID or someone
else's broker on the same port is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.broker.readiness import BrokerError, wait_ready


@dataclass(frozen=True)
class BrokerInfo:
    """What a pid file records about a running broker."""

    kind: str
    pid: int
    host: str
    port: int
    log: str
    marker: str
    started_at: float

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (host, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # A zombie (state Z) has exited; its parent just has not reaped it yet.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and marker in cmdline


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


class ManagedBroker(ABC):
    """A broker process started, watched and stopped by the project."""

    kind: str = ""

    def __init__(self, host: str, port: int, workdir: Path, start_timeout: float = 90.0) -> None:
        self.host = host
        self.port = port
        self.workdir = workdir
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    # -- what a concrete broker provides --------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Check prerequisites and lay out files; raise BrokerError with a clear reason."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that runs the broker in the foreground."""

    @abstractmethod
    def marker(self) -> str:
        """A string found in the broker's command line, to recognise our process."""

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> Path:
        return self.workdir

    # -- shared behaviour -----------------------------------------------------
    @property
    def pidfile(self) -> Path:
        return self.workdir / "broker.json"

    @property
    def logfile(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    def info(self) -> BrokerInfo | None:
        """The recorded broker if its process still runs, else None (stale files go)."""
        try:
            data = json.loads(self.pidfile.read_text())
            info = BrokerInfo(**data)
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if pid_alive(info.pid, info.marker):
            return info
        self.pidfile.unlink(missing_ok=True)
        return None

    async def start(self) -> BrokerInfo:
        """Start the broker detached, wait until it answers a metadata request."""
        running = self.info()
        if running is not None:
            if running.port == self.port:
                return running
            raise BrokerError(
                f"the {self.kind} broker already runs on {running.bootstrap} "
                f"(pid {running.pid}); stop it first"
            )
        if port_in_use(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use by another process; "
                f"stop that process or choose another port (WABOT_BROKER_URL)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(
                self.command(),
                cwd=self.cwd(),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not kill the broker
            )
        info = BrokerInfo(
            kind=self.kind,
            pid=proc.pid,
            host=self.host,
            port=self.port,
            log=str(self.logfile),
            marker=self.marker(),
            started_at=time.time(),
        )
        self.pidfile.write_text(json.dumps(asdict(info)))
        # Kept so that stop() reaps it: a Popen dropped while its process runs warns
        # (ResourceWarning), and an unreaped child stays a zombie until this process ends.
        self._process = proc
        try:
            await wait_ready(
                info.bootstrap, timeout=self.start_timeout, alive=lambda: proc.poll() is None
            )
        except BrokerError as exc:
            self._terminate(proc.pid, self.marker())
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            self.pidfile.unlink(missing_ok=True)
            tail = log_tail(self.logfile)
            raise BrokerError(f"{exc}\nlast lines of {self.logfile}:\n{tail}") from None
        return info

    def stop(self, timeout: float = 20.0) -> BrokerInfo | None:
        """Stop the broker this project started; return what was stopped, or None."""
        info = self.info()
        if info is None:
            return None
        self._terminate(info.pid, info.marker, timeout)
        self.pidfile.unlink(missing_ok=True)
        process, self._process = self._process, None
        if process is not None and process.pid == info.pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        return info

    @staticmethod
    def _terminate(pid: int, marker: str, timeout: float = 20.0) -> None:
        if not pid_alive(pid, marker):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid, marker):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
