"""``feedbot`` as a real process, for the end-to-end tests.

A daemon is started with ``server.port = 0``: the port it bound is read back from
its own log line, so no port is chosen before the daemon holds it. Its log is read
as it is written (so the pipe never fills up) and kept, for the tests to wait on
what the daemon says it did and to show when something goes wrong. Tests wait on
conditions with a generous deadline (:data:`PATIENCE`), never on a sleep: a
loaded machine makes everything slower, not different.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# Seconds a test waits for a condition before it fails: far beyond what the
# condition takes on an idle machine, so only a real fault reaches it.
PATIENCE = 60.0

_LISTENING = re.compile(r"web server listening on (http://[^\s\"]+)")


def day_key(day: date) -> str:
    """The archive's folder name for ``day`` (``2007/07/9``: no leading zero on the day)."""
    return f"{day:%Y/%m}/{day.day}"


async def until(predicate: Callable[[], bool], seconds: float = PATIENCE) -> None:
    """Wait until ``predicate()`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s")
        await asyncio.sleep(0.02)


async def until_async(predicate: Callable[[], Awaitable[bool]], seconds: float = PATIENCE) -> None:
    """:func:`until` for a predicate that must await (an HTTP request, a query)."""
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s")
        await asyncio.sleep(0.05)


class Feedbot:
    """One ``python -m feedbot`` process, its log kept line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"log of {process.pid}")

    @classmethod
    async def start(cls, *args: str) -> Feedbot:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "feedbot",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode("utf-8", errors="replace").rstrip("\n"))
            self._new_line.set()
        self._new_line.set()  # end of output: wake the waiters to notice

    async def logged(self, pattern: re.Pattern[str], seconds: float = PATIENCE) -> re.Match[str]:
        """The first log line matching ``pattern``, once the daemon has written it."""
        seen = 0
        async with asyncio.timeout(seconds):
            while True:
                for line in self.lines[seen:]:
                    if found := pattern.search(line):
                        return found
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(
                        f"feedbot exited ({self.process.returncode}) before logging "
                        f"{pattern.pattern!r}:\n{self.log}"
                    )
                self._new_line.clear()
                await self._new_line.wait()

    async def wait(self, seconds: float = PATIENCE) -> int:
        """Its exit status, once it has exited (and its output is read)."""
        async with asyncio.timeout(seconds):
            returncode = await self.process.wait()
            await self._reader
        return returncode

    async def close(self) -> None:
        """Kill it if it still runs."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await self._reader


class Daemon(Feedbot):
    """``feedbot run``, with its bound web address."""

    url = ""

    async def listening(self) -> str:
        self.url = (await self.logged(_LISTENING)).group(1)
        return self.url

    async def metric(self, session: aiohttp.ClientSession, name: str, **labels: str) -> float:
        """A sample of ``/metrics`` (0 when the daemon has not recorded it yet)."""
        async with session.get(self.url + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0

    async def first_poll(self, session: aiohttp.ClientSession) -> None:
        """Wait for a poll of the archive to have completed in this process.

        From then on the first sync is recorded, so every new page alerts (whatever
        its date), and the poll lock orders any later poll after it."""

        async def polled() -> bool:
            return await self.metric(session, "feedbot_polls_total", status="ok") >= 1

        await until_async(polled)


@asynccontextmanager
async def feedbot_run(config: Path, *options: str) -> AsyncIterator[Daemon]:
    """``feedbot --config CONFIG OPTIONS run`` (its config says ``port = 0``), once
    it listens; killed on the way out if still running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feedbot",
        "--config",
        str(config),
        "--log-format",
        "json",
        *options,
        "run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    daemon = Daemon(process)
    try:
        await daemon.listening()
        yield daemon
    finally:
        await daemon.close()
