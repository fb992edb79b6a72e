"""The web server's connection limits against real slow clients on loopback.

``server.header_timeout``, ``server.keepalive_timeout`` and ``server.max_connections``
(:mod:`feedbot.web.limits`): raw sockets that send half a request, trickle a header,
sit idle after a response or hold the cap, against the real
:class:`~feedbot.web.WebServer` on port 0. A disconnect is seen as end of file within a
generous deadline, never by timing it. The last test runs the server in its own process
with few file descriptors, as a small container would, and opens 500 slow connections.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from feedbot.feeds.cache import FeedCache
from feedbot.settings import Settings
from feedbot.store import Store
from feedbot.web import WebServer
from feedbot.web.limits import LOOPBACK_RESERVE, ConnectionLimits, is_loopback

DEADLINE = 30.0  # generous: a disconnect or an answer must come well before this
HALF_LINE = b"GET /topics HT"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: feeds.test\r\n\r\n"
NO_TIMEOUT = 3600.0  # the largest allowed: "does not fire during this test"

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def serving(tmp_path: Path, **server: Any) -> AsyncIterator[WebServer]:
    config = Settings(server={"host": "127.0.0.1", "port": 0, **server})
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    web = WebServer(config, store, FeedCache(store, config.public_base_url), access_log=False)
    await web.start()
    try:
        yield web
    finally:
        await web.stop()
        await store.close()


async def connect(port: int, sent: bytes = b"") -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if sent:
        writer.write(sent)
        await writer.drain()
    return reader, writer


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts)."""
    async with asyncio.timeout(DEADLINE):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response on a kept-alive connection: its status and body."""
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        return int(lines[0].split()[1]), await reader.readexactly(length)


async def healthz(port: int) -> bytes:
    """``GET /healthz`` on a new connection; what came back before it closed."""
    reader, writer = await connect(
        port, HEALTHZ.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    try:
        return await until_closed(reader)
    finally:
        writer.close()


async def healthz_eventually(port: int) -> None:
    """``/healthz`` answers 200 before the deadline (a refusal while full is retried)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            try:
                if (await healthz(port)).startswith(b"HTTP/1.1 200 "):
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)


async def trickle(writer: asyncio.StreamWriter, closed: asyncio.Task[bytes]) -> None:
    """One byte of a header value every 0.1 s until the server closes: the whole
    header would take far longer than the deadline."""
    writer.write(b"X-Pad: ")
    while not closed.done():
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.wait([closed], timeout=0.1)


# -- header_timeout ------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", HALF_LINE, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
async def test_unfinished_headers_are_disconnected(tmp_path: Path, sent: bytes) -> None:
    async with serving(tmp_path, header_timeout=0.3, keepalive_timeout=NO_TIMEOUT) as web:
        reader, writer = await connect(web.port, sent)
        try:
            assert await until_closed(reader) == b""
        finally:
            writer.close()
        await healthz_eventually(web.port)


async def test_a_trickled_header_is_cut_off(tmp_path: Path) -> None:
    """Bytes arriving do not extend the deadline."""
    async with serving(tmp_path, header_timeout=0.5, keepalive_timeout=NO_TIMEOUT) as web:
        reader, writer = await connect(web.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed = asyncio.create_task(until_closed(reader))
        try:
            await trickle(writer, closed)
            assert await closed == b""
        finally:
            writer.close()


async def test_a_kept_alive_connection_outlives_the_header_timeout(tmp_path: Path) -> None:
    """The deadline is for the first request's headers: once they are in, an idle
    connection is the keep-alive timeout's, and a slow answer is not cut off."""
    async with serving(tmp_path, header_timeout=0.2, keepalive_timeout=NO_TIMEOUT) as web:
        reader, writer = await connect(web.port, HEALTHZ)
        try:
            assert await response(reader) == (200, b"ok\n")
            await asyncio.sleep(1.0)  # five header timeouts; too short only hides a bug
            writer.write(HEALTHZ)
            assert await response(reader) == (200, b"ok\n")
        finally:
            writer.close()


# -- keepalive_timeout ---------------------------------------------------------------------


async def test_an_idle_keepalive_connection_is_closed(tmp_path: Path) -> None:
    async with serving(tmp_path, header_timeout=NO_TIMEOUT, keepalive_timeout=0.3) as web:
        reader, writer = await connect(web.port, HEALTHZ)
        try:
            assert await response(reader) == (200, b"ok\n")
            assert await until_closed(reader) == b""
        finally:
            writer.close()


async def test_a_trickled_second_request_is_cut_off(tmp_path: Path) -> None:
    """aiohttp's keep-alive timer runs until the next request's headers are complete:
    a later request cannot be trickled past ``keepalive_timeout`` either."""
    async with serving(tmp_path, header_timeout=NO_TIMEOUT, keepalive_timeout=0.5) as web:
        reader, writer = await connect(web.port, HEALTHZ)
        try:
            assert await response(reader) == (200, b"ok\n")
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            closed = asyncio.create_task(until_closed(reader))
            await trickle(writer, closed)
            assert await closed == b""
        finally:
            writer.close()


# -- max_connections -----------------------------------------------------------------------


async def test_over_the_cap_a_connection_is_refused_until_one_closes(tmp_path: Path) -> None:
    cap = 2
    async with serving(
        tmp_path, header_timeout=NO_TIMEOUT, keepalive_timeout=NO_TIMEOUT, max_connections=cap
    ) as web:
        # Every peer here is on loopback, which has the reserve on top of the cap.
        held = [await connect(web.port, HALF_LINE) for _ in range(cap + LOOPBACK_RESERVE)]
        try:
            refused = await healthz(web.port)
            assert refused.startswith(b"HTTP/1.1 503 ")
            assert b"\r\nConnection: close\r\n" in refused
            assert refused.endswith(b"\r\n\r\ntoo many connections\n")

            held.pop()[1].close()
            await healthz_eventually(web.port)
        finally:
            for _, writer in held:
                writer.close()
        await healthz_eventually(web.port)
        assert web.limits is not None and web.limits.refused >= 1


async def test_the_cap_holds_for_every_peer_and_loopback_has_a_reserve() -> None:
    """The admission rule alone, for peers this test cannot be (other hosts)."""
    limits = ConnectionLimits(asyncio.Protocol, header_timeout=1.0, max_connections=2)
    outsider = ("192.0.2.7", 40000)
    assert limits.admit(outsider) and limits.admit(outsider)
    assert not limits.admit(outsider)
    loopback = [("127.0.0.1", 1), ("::1", 1, 0, 0), ("::ffff:127.0.0.1", 1, 0, 0)]
    for index in range(LOOPBACK_RESERVE):
        assert limits.admit(loopback[index % len(loopback)])
    assert not limits.admit(("127.0.0.1", 1))
    assert not limits.admit(outsider)
    limits.release()
    assert not limits.admit(outsider)  # the reserve is still in use
    for _ in range(LOOPBACK_RESERVE):
        limits.release()
    assert limits.admit(outsider)
    assert (limits.open, limits.refused) == (2, 4)


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.9.9.9", 1), True),
        (("::1", 1, 0, 0), True),
        (("::ffff:127.0.0.1", 1, 0, 0), True),
        (("192.0.2.1", 1), False),
        (("::ffff:192.0.2.1", 1, 0, 0), False),
        (("2001:db8::1", 1, 0, 0), False),
        (("fe80::1%eth0", 1, 0, 2), False),
        ("/run/feedbot.sock", False),
        (None, False),
    ],
)
def test_is_loopback(peer: object, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


async def test_descriptors_short_of_the_cap_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = ConnectionLimits(asyncio.Protocol, header_timeout=1.0, max_connections=soft)
    limits.warn_if_descriptors_short()
    assert "server.max_connections" in caplog.text
    caplog.clear()
    ConnectionLimits(
        asyncio.Protocol, header_timeout=1.0, max_connections=1
    ).warn_if_descriptors_short()
    assert caplog.text == ""


# -- 500 slow clients against a server with few descriptors --------------------------------

SERVER = textwrap.dedent(
    """
    import asyncio, resource, sys
    from feedbot.feeds.cache import FeedCache
    from feedbot.loop import run
    from feedbot.settings import Settings
    from feedbot.store import Store
    from feedbot.web import WebServer

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    async def main():
        config = Settings(server={"host": "127.0.0.1", "port": 0, "header_timeout": 1.0,
                                  "max_connections": 100})
        store = await Store.open("sqlite:///" + sys.argv[1])
        web = WebServer(config, store, FeedCache(store, config.public_base_url), access_log=False)
        await web.start()
        print(web.port, flush=True)
        await asyncio.Event().wait()

    run(main())  # on the daemon's loop
    """
)


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
async def test_500_slow_clients_do_not_exhaust_a_small_server(tmp_path: Path) -> None:
    """256 descriptors, 500 connections that never finish a request line: the cap
    turns the excess away at once, the header timeout drops the rest, and /healthz
    answers. Without them the server runs out of descriptors and stops accepting."""
    errors = (tmp_path / "stderr").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        str(tmp_path / "feedbot.db"),
        stdout=asyncio.subprocess.PIPE,
        stderr=errors,
    )
    held: list[Stream] = []
    try:
        assert process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            port = int(await process.stdout.readline())
        idle = descriptors(process.pid)
        peak = idle
        async with asyncio.timeout(DEADLINE):
            for _ in range(500):
                held.append(await connect(port, HALF_LINE))
                peak = max(peak, descriptors(process.pid))
        # At most the cap plus connections accepted in one go (up to the backlog, 128)
        # before each is refused: never all 256, where accepting fails.
        assert peak < 256
        await asyncio.gather(*(until_closed(reader) for reader, _ in held))
        await healthz_eventually(port)
        async with asyncio.timeout(DEADLINE):
            while descriptors(process.pid) > idle:
                await asyncio.sleep(0.05)
    finally:
        for _, writer in held:
            writer.close()
        process.kill()
        await process.wait()
        errors.close()
