"""kill -9 of ``feedbot run`` leaves no process behind.

The daemon runs in a session of its own; after it is killed mid-poll (parse
workers running) or mid-delivery (delivery workers waiting on a receiver that
does not answer), every process of that session must end: the workers and
multiprocessing's helpers. Processes are found through /proc, so these tests
run on Linux only. The last test starts a worker from a throwaway parent to
cover what the daemon cannot easily be made to do: die while its child is
still starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import PATIENCE, REPO, write_page
from tests.receivers import running_receiver

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc"),
]

PAGES = 600  # at least _Parser.LARGE: the first poll starts the parse pool
DEADLINE = PATIENCE  # the processes end within a fraction of a second


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmdline: str


def session(sid: int) -> dict[int, Proc]:
    """The live processes of session ``sid`` (zombies hold nothing and are left out)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # it ended while we looked
        if int(fields[3]) == sid and fields[0] != "Z":
            pid = int(stat.parent.name)
            text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found[pid] = Proc(pid, int(fields[1]), text)
    return found


def descendants(pid: int) -> list[Proc]:
    """Children of ``pid`` and their children, found through its session."""
    processes = session(pid)
    found, parents = [], {pid}
    while True:
        more = [p for p in processes.values() if p.ppid in parents and p not in found]
        if not more:
            return found
        found += more
        parents |= {p.pid for p in more}


def parse_workers(pid: int) -> list[Proc]:
    """Processes under the daemon that do the parsing: those with no children of
    their own (a forkserver has some), other than multiprocessing's resource tracker."""
    below = descendants(pid)
    parents = {p.ppid for p in below}
    return [p for p in below if p.pid not in parents and "resource_tracker" not in p.cmdline]


async def until(predicate: Callable[[], object], what: Callable[[], str]) -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > DEADLINE:
            raise AssertionError(f"not within {DEADLINE} s: {what()}")
        await asyncio.sleep(0.01)


def kill_session(sid: int) -> None:
    """End what a failed test left of the session it started (by pid, one by one)."""
    for pid in session(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def write_archive(root: Path, day: str, pages: int) -> None:
    # Written an hour ago, so no poll takes them for pages still being written.
    written = time.time() - 3600
    for i in range(pages):
        path = write_page(root, day, f"event-{i:04d}", f"Event {i}", story="Orphans")
        os.utime(path, (written, written))


def write_config(tmp_path: Path, archive: Path, **sections: dict[str, object]) -> Path:
    def value(v: object) -> str:
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    tables = {
        "archive": {"source": str(archive), "poll_interval": 3600},
        "store": {"url": f"sqlite:///{tmp_path / 'feedbot.db'}"},
        "server": {"host": "127.0.0.1", "port": 0},
    }
    for name, keys in sections.items():
        tables.setdefault(name, {}).update(keys)
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {value(v)}\n" for key, v in keys.items())
        for name, keys in tables.items()
        if name != "subscriptions"
    )
    if "subscriptions" in tables:
        text += "[[subscriptions]]\n" + "".join(
            f"{key} = {value(v)}\n" for key, v in tables["subscriptions"].items()
        )
    path = tmp_path / "feedbot.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return "\n".join(self.log[-30:])


@asynccontextmanager
async def feedbot_run(config: Path) -> AsyncIterator[Daemon]:
    """``feedbot run`` in a session of its own, once its web server listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feedbot",
        "--config",
        str(config),
        "run",
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    daemon = Daemon(process)
    listening = asyncio.get_running_loop().create_future()

    async def read_log() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():  # read on: a full pipe would stall it
            daemon.log.append(line.decode(errors="replace").rstrip())
            if not listening.done() and re.search(
                r"web server listening on http://\S+", line.decode()
            ):
                listening.set_result(None)
        if not listening.done():
            listening.set_exception(AssertionError(f"feedbot run ended:\n{daemon.output()}"))

    reading = asyncio.create_task(read_log())
    try:
        async with asyncio.timeout(DEADLINE):
            await listening
        yield daemon
    finally:
        kill_session(daemon.pid)  # the daemon and whatever it left
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await process.wait()


async def kill_and_expect_nothing_left(daemon: Daemon) -> None:
    os.kill(daemon.pid, signal.SIGKILL)
    # Not process.wait(): it also waits for the end of the log pipe, which a
    # process left behind holds open.
    await until(
        lambda: not session(daemon.pid),
        lambda: (
            "still running after kill -9 of the daemon: "
            + "; ".join(f"{p.pid} {p.cmdline[:100]}" for p in session(daemon.pid).values())
        ),
    )


async def test_kill_9_mid_poll_leaves_no_parse_worker(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_archive(archive, "2020/01/15", PAGES)
    config = write_config(tmp_path, archive)
    async with feedbot_run(config) as daemon:
        await until(
            lambda: len(parse_workers(daemon.pid)) >= 1,
            lambda: f"no parse pool under the daemon; its log:\n{daemon.output()}",
        )
        assert not any("poll of archive" in line for line in daemon.log), "the poll was over"
        await kill_and_expect_nothing_left(daemon)


async def test_kill_9_mid_delivery_leaves_no_delivery_worker(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    archive = tmp_path / "archive"
    write_archive(archive, f"{today:%Y/%m}/{today.day}", PAGES)  # the day unpadded
    answered = asyncio.Event()

    async def slowly(_request: web.Request, _n: int) -> web.StreamResponse:
        await answered.wait()  # until the test ends: the attempts stay in flight
        return web.Response(status=204)

    async with running_receiver() as receiver:
        receiver.answer = slowly
        # A graceful stop would wait up to 300 s for the attempts in flight; a
        # dead daemon's workers must not.
        config = write_config(
            tmp_path,
            archive,
            server={"shutdown_timeout": 300},
            notify={
                "workers": 2,
                "timeout": 300,
                "backfill_days": 2,
                "allow_private_targets": True,
            },
            subscriptions={"url": receiver.url, "topics": ["*"]},
        )
        try:
            async with feedbot_run(config) as daemon:
                await until(
                    lambda: len(receiver.received) >= 2,
                    lambda: f"no webhook in flight; the daemon's log:\n{daemon.output()}",
                )
                await kill_and_expect_nothing_left(daemon)
        finally:
            answered.set()


_STARTER = """
import multiprocessing, os, sys, time

from feedbot.processes import die_with_parent


def worker(late):
    if late:  # still starting when the parent dies
        parent = multiprocessing.parent_process().pid
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
    die_with_parent()
    print("watching", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    method, late = sys.argv[1], sys.argv[2] == "late"
    child = multiprocessing.get_context(method).Process(target=worker, args=(late,))
    child.start()
    print(child.pid, flush=True)
    time.sleep(3600)
"""


# spawn: the worker's parent is the starter (the kernel's signal and the pipe both
# watch it); forkserver: its parent is the forkserver, so the pipe alone must do.
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("when", ["started", "late"])
async def test_a_worker_ends_with_its_parent(tmp_path: Path, method: str, when: str) -> None:
    script = tmp_path / "starter.py"
    script.write_text(_STARTER, encoding="utf-8")
    starter = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        method,
        when,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # this tree's feedbot
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert starter.stdout is not None
        async with asyncio.timeout(DEADLINE):
            worker = int(await starter.stdout.readline())
            if when == "started":
                assert await starter.stdout.readline() == b"watching\n"
        assert worker in session(starter.pid)
        starter.kill()  # and no wait(): it waits for the pipe the worker holds too
        await until(
            lambda: not session(starter.pid),
            lambda: f"left: {[p.cmdline[:80] for p in session(starter.pid).values()]}",
        )
    finally:
        kill_session(starter.pid)
        await starter.wait()
