"""How uvicorn serves the operator API (``faust -A pipeline api`` and inside a worker).

uvicorn closes a kept-alive connection after ``timeout_keep_alive``, but a client that
connects and sends nothing, or sends half a header or half a body, holds its connection
(and a task waiting for the body) for as long as it likes; a few hundred of them exhaust the
process's file descriptors. :class:`TimedH11Protocol` (uvicorn's h11 protocol with two
timers) closes them:

- idle (WABOT_API_IDLE_TIMEOUT_S): no request under way, on a new connection as on one kept
  alive after an answer: the connection is closed;
- request (WABOT_API_REQUEST_TIMEOUT_S): from the first byte of a request until its headers
  and body have all arrived, however slowly they trickle in: past it the client gets 408
  and the connection is closed. The time the app then takes to answer is not counted.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.config.settings import Settings

__all__ = ["TimedH11Protocol", "server_config"]

#: What a client whose request did not arrive in time reads (the API's error shape).
_TIMEOUT_BODY = b'{"code":"request_timeout","message":"the request did not arrive in time"}'
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes idle connections and requests that arrive too
    slowly. Subclass it with :meth:`with_timeouts` (uvicorn builds protocols itself, from a
    class)."""

    idle_timeout_s: ClassVar[float] = 5.0
    request_timeout_s: ClassVar[float] = 10.0

    @classmethod
    def with_timeouts(cls, idle_s: float, request_s: float) -> type[TimedH11Protocol]:
        """The protocol class with these timeouts, seconds."""
        return type(
            "TimedH11Protocol",
            (cls,),
            {"idle_timeout_s": idle_s, "request_timeout_s": request_s},
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's keep-alive timer is the idle timer (uvicorn arms it after each answer).
        self.timeout_keep_alive = self.idle_timeout_s  # type: ignore[assignment]
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms no timer before the first request: a silent client would stay.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.idle_timeout_s, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_request()  # a pipelined request may be under way already

    def _receiving(self) -> bool:
        """A request has begun and has not fully arrived."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        return state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _watch_request(self) -> None:
        if self.transport.is_closing() or not self._receiving():
            self._stop_request_timer()
        elif self._request_timer is None:
            self._request_timer = self.loop.call_later(
                self.request_timeout_s, self._request_timed_out
            )

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing() or not self._receiving():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_TIMED_OUT)
        self.transport.close()  # the app, if waiting for the body, sees a disconnect


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration of ``app`` on ``settings.web_host:settings.api_port``, with
    the idle and request timeouts of ``settings`` (see the module's docstring)."""
    return uvicorn.Config(
        app,
        host=settings.web_host,
        port=settings.api_port,
        http=TimedH11Protocol.with_timeouts(
            settings.api_idle_timeout_s, settings.api_request_timeout_s
        ),
        log_config=None,
        # Access lines carry paths and queries (chat ids, search text): not logged.
        access_log=False,
        lifespan="on",
    )
