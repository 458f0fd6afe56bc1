"""Running the project's local asyncio servers (the LLM stand-in, the WhatsApp look-alike).

``ThreadedServer`` puts one on its own thread, for synchronous callers: tests and
benchmarks get a server that keeps answering while their own thread blocks, and every
call into it is marshalled onto its loop, so there is no shared-state race.
``serve_until_stopped`` runs one in the foreground for ``python -m ...``.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future as ConcurrentFuture
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

_T = TypeVar("_T")


class AsyncServer(Protocol):
    async def start(self, host: str = ..., port: int = ...) -> str: ...
    async def stop(self) -> None: ...

    @property
    def base_url(self) -> str: ...


S = TypeVar("S", bound=AsyncServer)


class ThreadedServer(Generic[S]):
    """``server`` on a private event loop in a daemon thread."""

    def __init__(self, server: S, name: str) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._stopped = False

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> str:
        """Starts the loop thread and the server; returns the base URL."""
        self._thread.start()
        try:
            return self.call(self.server.start(host, port), timeout)
        except BaseException:
            self._shutdown_loop()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server, then the loop and its thread; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.call(self.server.stop(), timeout)
        finally:
            self._shutdown_loop()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def run(self, fn: Callable[[], _T], timeout: float = 10.0) -> _T:
        """Runs ``fn`` on the server's loop, the one place its state may be touched."""

        async def call() -> _T:
            return fn()

        return self.call(call(), timeout)

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        future: ConcurrentFuture[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _shutdown_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
        if not self._thread.is_alive():
            self._loop.close()


async def serve_until_stopped(
    server: AsyncServer, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Start ``server``, hand its URL to ``announce``, serve until SIGTERM (or Ctrl-C)."""
    url = await server.start(host, port)
    announce(url)
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    try:
        await done.wait()
    finally:
        await server.stop()
