"""Running the web app: :class:`WebServer` binds it to ``server.host``/``server.port``.

The daemon starts it beside the poll scheduler and stops it on shutdown; tests
start it on port 0 and read the bound port back. Connections are held to
``server.header_timeout``, ``server.keepalive_timeout`` and ``server.max_connections``
(:mod:`.limits`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from feedbot.feeds.cache import FeedCache
from feedbot.metrics import Metrics
from feedbot.settings import Settings
from feedbot.store import Store
from feedbot.web.app import create_app
from feedbot.web.health import ReadinessProbe
from feedbot.web.limits import ConnectionLimits

log = logging.getLogger(__name__)


class WebServer:
    """The app on one TCP site. ``access_log=False`` drops per-request log lines
    (for benchmarks; the daemon keeps them). ``metrics`` and ``readiness`` go to
    :func:`~feedbot.web.app.create_app`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cache: FeedCache,
        *,
        access_log: bool = True,
        metrics: Metrics | None = None,
        readiness: ReadinessProbe | None = None,
    ) -> None:
        self.settings = settings
        self.app = create_app(settings, store, cache, metrics=metrics, readiness=readiness)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._port: int | None = None
        self.limits: ConnectionLimits | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when ``server.port`` is 0)."""
        if self._port is None:
            raise RuntimeError("the web server is not started")
        return self._port

    @property
    def url(self) -> str:
        """Where this process listens (not the public ``base_url``)."""
        host = self.settings.server.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the web server is already started")
        server = self.settings.server
        runner = web.AppRunner(
            self.app,
            handle_signals=False,  # the daemon owns SIGTERM
            shutdown_timeout=server.shutdown_timeout,
            keepalive_timeout=server.keepalive_timeout,
            access_log=logging.getLogger("aiohttp.access") if self._access_log else None,
        )
        await runner.setup()
        assert runner.server is not None
        limits = ConnectionLimits(
            runner.server,
            header_timeout=server.header_timeout,
            max_connections=server.max_connections,
        )
        try:
            # Our own listener instead of a TCPSite: a site hands aiohttp's protocol
            # factory to the loop as is, with no place for the limits.
            listener = await asyncio.get_running_loop().create_server(
                limits, server.host, server.port, backlog=128
            )
        except BaseException:
            await runner.cleanup()
            raise
        limits.warn_if_descriptors_short()
        self._runner, self._listener, self.limits = runner, listener, limits
        self._port = int(listener.sockets[0].getsockname()[1])
        log.info("web server listening on %s", self.url)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to
        ``server.shutdown_timeout``), close. Safe to call twice."""
        listener, self._listener = self._listener, None
        runner, self._runner = self._runner, None
        if listener is not None:
            listener.close()
        if runner is not None:
            await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()
            log.info("web server stopped")
