"""A PostgreSQL server of our own for tests and benchmarks: a throwaway cluster from Debian's
``postgresql`` package (``initdb`` + ``pg_ctl`` under ``/usr/lib/postgresql/<version>/bin``) in a
temp folder, on a free 127.0.0.1 port with its unix socket in that folder, stopped at the end.
PostgreSQL refuses to run as root, so as root (CI) the cluster runs as the ``postgres`` user
the package creates. Never imported by production code.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from pipeline.broker import free_port

__all__ = ["PostgresNotInstalledError", "PostgresServer", "create_database", "throwaway_postgres"]


class PostgresNotInstalledError(RuntimeError):
    """Debian's ``postgresql`` package (initdb, pg_ctl) is not on this machine."""


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise PostgresNotInstalledError(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql)"
        )
    return path


class PostgresServer:
    """A PostgreSQL cluster in ``folder`` on 127.0.0.1:``port``, superuser ``wabot``, trust
    auth (it listens on the loopback only). :meth:`stop` and :meth:`start` again keep the data,
    which is how tests take the database down and bring it back."""

    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = folder
        self.fsync = fsync
        self.data = folder / "data"
        self.socket_dir = folder / "socket"
        self.log = folder / "postgres.log"
        self.port = free_port()
        self.user = "wabot"
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
            for path in (folder, self.socket_dir):
                path.mkdir(exist_ok=True)
                os.chown(path, owner.pw_uid, owner.pw_gid)
        else:
            self.socket_dir.mkdir(exist_ok=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self) -> PostgresServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories="
            f"{self.socket_dir} -c fsync={'on' if self.fsync else 'off'} -c max_connections=50"
        )
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop`` signals the postmaster by its pid file's PID)."""
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        asyncio.run(create_database(self.url(), name))
        return self.url(name)

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.folder,
        )
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}\n{tail}"
            )


@contextlib.contextmanager
def throwaway_postgres(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of its own for one test (it may stop and start it); ``fsync``
    off unless asked (tests need no durability across power cuts; benchmarks do)."""
    folder = Path(tempfile.mkdtemp(prefix="wabot-pg-"))
    server = PostgresServer(folder, fsync=fsync)
    try:
        server.init().start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


async def create_database(base: str, name: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    url = make_url(base)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
