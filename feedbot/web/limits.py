"""Connection limits of the web server: a deadline for request headers and a cap on
open connections.

aiohttp 3.14 documents ``keepalive_timeout`` (an idle keep-alive connection is
closed after it; :class:`~feedbot.web.server.WebServer` passes
``server.keepalive_timeout``) but offers neither a header-read timeout nor a cap on
connections. Both live here, in front of the documented protocol factory
(:attr:`aiohttp.web.BaseRunner.server`, "a protocol factory compatible with
``loop.create_server``"): every accepted connection first meets a :class:`_Guard`.

- Over ``server.max_connections`` open connections, a new one is answered ``503``
  with ``Connection: close`` and closed at once, before aiohttp sees it. Peers on
  loopback have :data:`LOOPBACK_RESERVE` more slots, so the container's health check
  (``GET /healthz`` from 127.0.0.1) still gets in while outsiders fill the cap.
- A connection whose first request has not finished its header block within
  ``server.header_timeout`` of the connect is closed. The header block ends at its
  blank line, found in the bytes as they arrive. Later requests on a kept-alive
  connection are aiohttp's: its keep-alive timer runs from the previous response until
  the next request's headers are complete, partial bytes do not reset it, so a
  trickled later request is cut off after ``server.keepalive_timeout``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections.abc import Callable
from typing import cast

log = logging.getLogger(__name__)

LOOPBACK_RESERVE = 4
# Descriptors the daemon needs beside its HTTP connections: the store, webhook
# requests, worker pipes, log files.
_OTHER_FDS = 256
_BUSY_BODY = b"too many connections\n"
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 5\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
_WARN_EVERY = 60.0  # seconds between two warnings about refused connections


def is_loopback(peername: object) -> bool:
    """Whether a transport's ``peername`` is a loopback address (IPv4-mapped too)."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return False
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class ConnectionLimits:
    """The protocol factory to give ``loop.create_server``: wraps ``protocol_factory``
    (aiohttp's) with the header deadline and the connection cap. ``open`` and
    ``refused`` count connections admitted and open, and connections turned away."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        header_timeout: float,
        max_connections: int,
    ) -> None:
        self._factory = protocol_factory
        self._loop = asyncio.get_running_loop()
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self._refused_unreported = 0
        self._last_warning: float | None = None

    def __call__(self) -> asyncio.Protocol:
        return _Guard(self)

    def warn_if_descriptors_short(self) -> None:
        """Log a warning when the process may open fewer files than the cap needs:
        past that limit accepting fails (EMFILE) for everyone, health check included."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = self.max_connections + LOOPBACK_RESERVE + _OTHER_FDS
        if soft != resource.RLIM_INFINITY and soft < needed:
            log.warning(
                "server.max_connections is %d but this process may open only %d files "
                "(%d needed with the rest of the daemon): lower server.max_connections "
                "or raise the open-files limit (ulimit -n)",
                self.max_connections,
                soft,
                needed,
            )

    def admit(self, peername: object) -> bool:
        """Whether a new connection from ``peername`` gets a slot (counted open until
        :meth:`release`); one that does not is counted refused."""
        if self.open < self.max_connections or (
            self.open < self.max_connections + LOOPBACK_RESERVE and is_loopback(peername)
        ):
            self.open += 1
            return True
        self.refused += 1
        self._refused_unreported += 1
        now = self._loop.time()
        if self._last_warning is None or now - self._last_warning >= _WARN_EVERY:
            log.warning(
                "refusing connections: server.max_connections (%d) are open; "
                "%d refused since the last warning",
                self.max_connections,
                self._refused_unreported,
            )
            self._last_warning = now
            self._refused_unreported = 0
        return False

    def release(self) -> None:
        self.open -= 1


class _Guard(asyncio.Protocol):
    """One connection: refused, or passed to aiohttp's protocol with a deadline for
    the end of the first request's header block."""

    __slots__ = ("_deadline", "_inner", "_limits", "_tail")

    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        self._inner: asyncio.Protocol | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        if not limits.admit(transport.get_extra_info("peername")):
            # uvloop's transports are not asyncio.Transport subclasses, hence no check
            cast(asyncio.Transport, transport).write(BUSY_RESPONSE)
            transport.close()
            return
        self._deadline = limits._loop.call_later(limits.header_timeout, transport.close)
        self._inner = limits._factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._deadline is not None:
            # The blank line ending the header block; a bare LF is accepted too, so a
            # lenient parse is never cut off mid-request.
            seen = self._tail + data
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = seen[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        inner, self._inner = self._inner, None
        if inner is not None:
            self._limits.release()
            inner.connection_lost(exc)
