"""``feedbot run`` as a real process: first start, instant pickup, SIGTERM, kill -9.

Each test runs the daemon as a subprocess with a temporary config, archive and
SQLite file, and a real webhook receiver on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import write_page
from tests.receivers import Receiver, running_receiver

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(tmp_path: Path, archive: Path, hook: str, port: int, **notify: object) -> Path:
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in notify.items())
    path = tmp_path / "feedbot.toml"
    path.write_text(
        f"""
[archive]
source = "{archive}"
poll_interval = 3600
[store]
url = "sqlite:///{tmp_path / "daemon.db"}"
[server]
host = "127.0.0.1"
port = {port}
shutdown_timeout = 5
[notify]
allow_private_targets = true
{extra}
[[subscriptions]]
url = "{hook}"
topics = ["*"]
""",
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def daemon(config: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feedbot",
        "--config",
        str(config),
        "run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_healthy(port, process)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.returncode is not None:
                output = await process.stdout.read() if process.stdout else b""
                raise AssertionError(f"feedbot run exited early:\n{output.decode()}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("feedbot run never became healthy")


async def until(predicate, seconds: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def event_ids(receiver: Receiver) -> list[str]:
    return [json.loads(body)["data"]["event"]["id"] for body in receiver.bodies]


@pytest.mark.parametrize("workers", [0, 2])
async def test_first_start_is_quiet_then_a_new_page_arrives_within_2s(
    tmp_path: Path, archive: Path, workers: int
) -> None:
    port = free_port()
    async with running_receiver() as receiver:
        config = write_config(
            tmp_path, archive, receiver.url, port, backfill_days=0, workers=workers
        )
        async with daemon(config, port) as process:
            await asyncio.sleep(1.0)  # the first poll has run: backfill_days = 0 alerts nobody
            assert receiver.received == []
            write_page(archive, "2026/11/27", "dam-burst", "A dam bursts", story="Floods")
            took = await until(lambda: len(receiver.received) == 1, seconds=2)
            assert event_ids(receiver) == ["2026/11/27/dam-burst"]
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/feeds/topics/floods.atom"
                async with session.get(url) as response:
                    assert response.status == 200
                    assert "A dam bursts" in await response.text()
                # Counted by the daemon, whichever process delivered it (a worker
                # reports it once the attempt is recorded: ask until it has).
                counted = 'feedbot_deliveries_total{outcome="delivered"} 1.0'
                async with asyncio.timeout(5):
                    while True:
                        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                            if counted in await response.text():
                                break
                        await asyncio.sleep(0.05)
            helpers = children_of(process.pid)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=6) == 0
            assert time.monotonic() - started < 5
            # Delivery workers (and multiprocessing's helpers) end with the daemon.
            await until(lambda: not any(alive(pid) for pid in helpers), seconds=5)
    assert took < 2


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("workers", [0, 2])
async def test_kill_9_mid_burst_loses_no_alert(tmp_path: Path, archive: Path, workers: int) -> None:
    port = free_port()
    async with running_receiver() as receiver:

        async def slow(_request: web.Request, _n: int) -> web.StreamResponse:
            await asyncio.sleep(0.05)
            return web.Response(status=204)

        receiver.answer = slow
        config = write_config(
            tmp_path, archive, receiver.url, port, backfill_days=0, per_host=2, workers=workers
        )
        async with daemon(config, port) as process:
            await asyncio.sleep(0.5)
            for i in range(60):
                write_page(archive, "2026/11/27", f"burst-{i:02d}", f"Burst event {i}")
            await until(lambda: len(receiver.received) >= 10, seconds=10)
            orphans = children_of(process.pid)
            assert len(orphans) >= workers
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        # Delivery workers (and multiprocessing's helpers) see the daemon go and end.
        await until(lambda: not any(alive(pid) for pid in orphans), seconds=15)
        delivered_before = len(receiver.received)
        assert delivered_before < 60, "the burst finished before the kill; nothing was tested"
        async with daemon(config, port):
            await until(lambda: len(set(event_ids(receiver))) == 60, seconds=20)
    ids = event_ids(receiver)
    assert set(ids) == {f"2026/11/27/burst-{i:02d}" for i in range(60)}
    # Duplicates (sent before the kill, recorded after) keep their webhook-id.
    webhook_ids: dict[str, set[str]] = {}
    for event_id, received in zip(ids, receiver.received, strict=True):
        webhook_ids.setdefault(event_id, set()).add(received.headers["webhook-id"])
    assert all(len(v) == 1 for v in webhook_ids.values())


async def failed_start(*args: str) -> tuple[int | None, list[str]]:
    """Run ``python -m feedbot ARGS`` to its end: its exit status and stderr lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feedbot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    return process.returncode, err.decode().strip().splitlines()


def bad_start_cases(tmp_path: Path, archive: Path) -> dict[str, tuple[list[str], str]]:
    good = f'[archive]\nsource = "{archive}"\n[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
    files = {
        "unknown_key": good + "[server]\nprot = 8080\n",
        "malformed_url": good + '[[subscriptions]]\nurl = "http//missing-colon"\n',
        "unreachable_postgres": f'[archive]\nsource = "{archive}"\n'
        '[store]\nurl = "postgresql://feedbot@127.0.0.1:1/feedbot"\n',
    }
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    return {
        "missing_config": ([str(tmp_path / "missing.toml")], "config file not found"),
        "unknown_key": ([str(tmp_path / "unknown_key.toml")], "unknown key 'server.prot'"),
        "malformed_url": ([str(tmp_path / "malformed_url.toml")], "subscriptions[0].url:"),
        "unreachable_postgres": (
            [str(tmp_path / "unreachable_postgres.toml")],
            "127.0.0.1:1/feedbot unreachable",
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing_config", "unknown_key", "malformed_url", "unreachable_postgres"]
)
async def test_bad_start_is_one_line_and_exit_2(tmp_path: Path, archive: Path, case: str) -> None:
    config, expected = bad_start_cases(tmp_path, archive)[case]
    returncode, lines = await failed_start("--config", *config, "run")
    assert returncode == 2, lines
    assert len(lines) == 1 and expected in lines[0], lines


async def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, archive: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, archive, "http://127.0.0.1:9/", port)
        returncode, lines = await failed_start(
            "--config", str(config), "--log-level", "error", "run"
        )
    assert returncode == 2
    assert lines == [f"feedbot: cannot listen on 127.0.0.1:{port}: Address already in use"], lines
