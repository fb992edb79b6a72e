"""Real HTTP peers for the tests: webhook receivers on loopback that record what they
got and answer as the test scripts them (status, headers, delays, junk), and the
recorded reply a test client keeps."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Reply:
    """A response read whole, so a test can look at it after the connection closed."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


@dataclass
class Receiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Called per request; returns the response. Default: 204.
    answer: Callable[[web.Request, int], Awaitable[web.StreamResponse]] | None = None

    @property
    def bodies(self) -> list[bytes]:
        return [r.body for r in self.received]


@asynccontextmanager
async def running_receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        receiver.received.append(Received(dict(request.headers), body, time.monotonic()))
        if receiver.answer is not None:
            return await receiver.answer(request, len(receiver.received))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b""):
    async def answer(_request: web.Request, _n: int) -> web.StreamResponse:
        return web.Response(status=code, headers=headers, body=body)

    return answer


def held(release: asyncio.Event):
    """Answer 204 once ``release`` is set: a receiver that hangs exactly as long
    as the test needs, not for a guessed number of seconds."""

    async def answer(_request: web.Request, _n: int) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    return answer
