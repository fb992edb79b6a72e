"""``feedbot`` as a real process, for the end-to-end tests.

A daemon is started with ``server.port = 0``: the port it bound is read back from
its own log line, so no port is chosen before the daemon holds it. Its log goes
to a file, for the tests to wait on what the daemon says it did and to show when
something goes wrong. Tests wait on conditions with a generous deadline
(:data:`PATIENCE`), never on a sleep: a loaded machine makes everything slower,
not different.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PATIENCE

_LISTENING = re.compile(r"web server listening on (http://[^\s\"]+)")


def day_key(day: date) -> str:
    """The archive's folder name for ``day`` (``2007/07/9``: no leading zero on the day)."""
    return f"{day:%Y/%m}/{day.day}"


async def until(
    predicate: Callable[[], bool], seconds: float = PATIENCE, *, what: str = "the condition"
) -> None:
    """Wait until ``predicate()`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        await asyncio.sleep(0.02)


async def until_async(
    predicate: Callable[[], Awaitable[bool]],
    seconds: float = PATIENCE,
    *,
    what: str = "the condition",
) -> None:
    """:func:`until` for a predicate that must await (an HTTP request, a query)."""
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        await asyncio.sleep(0.05)


class Daemon:
    """One ``feedbot run`` process, its log written to a file beside its config.

    A file, not a pipe: a process the daemon started may outlive it (a kill -9
    leaves orphans) and would hold a pipe open, so its end could not be awaited.
    """

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log_path = log
        self.url = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def logged(self, pattern: re.Pattern[str], seconds: float = PATIENCE) -> re.Match[str]:
        """The first log line matching ``pattern``, once the daemon has written it."""
        deadline = time.monotonic() + seconds
        while True:
            exited = self.process.returncode is not None
            log = self.log  # read after the exit check: nothing is written after it
            if found := pattern.search(log):
                return found
            if exited:
                raise AssertionError(
                    f"feedbot exited ({self.process.returncode}) before logging "
                    f"{pattern.pattern!r}:\n{log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern.pattern!r} not logged within {seconds:g} s:\n{log}")
            await asyncio.sleep(0.02)

    async def wait(self, seconds: float = PATIENCE) -> int:
        """Its exit status, once it has exited."""
        async with asyncio.timeout(seconds):
            return await self.process.wait()

    async def close(self) -> None:
        """Kill it if it still runs."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()

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

        await until_async(polled, what="a first poll")

    async def watching(self, session: aiohttp.ClientSession) -> None:
        """Wait for the folder watch to be in place: a page written from then on is
        seen (before it, a rewritten page can go unnoticed until the next poll)."""

        async def ready() -> bool:
            return await self.metric(session, "feedbot_archive_watch") == 1

        await until_async(ready, what="the folder watch")


def write_config(
    tmp_path: Path,
    archive: Path,
    *subscriptions: Mapping[str, object],
    port: int = 0,
    **notify: object,
) -> Path:
    """``tmp_path/feedbot.toml`` for a daemon under test: ``archive`` watched and
    polled hourly, a SQLite store in ``tmp_path``, the web server
    on loopback ``port`` (0: any free one), webhooks to loopback allowed and the
    ``notify`` keys given, and a ``[[subscriptions]]`` table for each of
    ``subscriptions``."""

    def table(keys: Mapping[str, object]) -> str:
        # A JSON string, number, boolean or list is the same TOML value.
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())

    sections = [
        "[archive]\n" + table({"source": str(archive), "poll_interval": 3600}),
        "[store]\n" + table({"url": f"sqlite:///{tmp_path / 'daemon.db'}"}),
        "[server]\n" + table({"host": "127.0.0.1", "port": port, "shutdown_timeout": 5}),
        "[notify]\n" + table({"allow_private_targets": True, **notify}),
        *("[[subscriptions]]\n" + table(subscription) for subscription in subscriptions),
    ]
    path = tmp_path / "feedbot.toml"
    path.write_text("\n".join(sections), encoding="utf-8")
    return path


async def feedbot_cli(*args: str) -> tuple[int | None, str, str]:
    """Run ``python -m feedbot ARGS`` to its end: its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feedbot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=PATIENCE)
    return process.returncode, out.decode(), err.decode()


@asynccontextmanager
async def feedbot_run(config: Path, *options: str) -> AsyncIterator[Daemon]:
    """``feedbot --config CONFIG OPTIONS run`` (its config says ``port = 0``), once
    it listens; killed on the way out if still running."""
    log = next(
        path
        for n in itertools.count()
        if not (path := config.with_name(f"{config.stem}.{n}.log")).exists()
    )
    with log.open("w", encoding="utf-8") as output:
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
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    daemon = Daemon(process, log)
    try:
        daemon.url = (await daemon.logged(_LISTENING)).group(1)
        yield daemon
    finally:
        await daemon.close()
