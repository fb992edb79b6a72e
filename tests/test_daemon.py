"""``feedbot run`` as a real process: first start, instant pickup, SIGTERM, kill -9.

Each test runs the daemon as a subprocess with a temporary config (``port = 0``),
archive and SQLite file, and a real webhook receiver on loopback. The tests wait
on what the daemon reports (its log, ``/metrics``), never on a sleep, and date
the pages they write from their own start, as the daemon reads the same clock
(the real one, or libfaketime's).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from feedbot.store import Store
from tests.conftest import write_page
from tests.daemons import day_key, feedbot_cli, feedbot_run, until, until_async
from tests.daemons import write_config as daemon_config
from tests.receivers import Receiver, running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def write_config(
    tmp_path: Path, archive: Path, hook: str, *, port: int = 0, **notify: object
) -> Path:
    return daemon_config(tmp_path, archive, {"url": hook, "topics": ["*"]}, port=port, **notify)


def event_ids(receiver: Receiver) -> list[str]:
    return [json.loads(body)["data"]["event"]["id"] for body in receiver.bodies]


async def queued_deliveries(config_dir: Path) -> int:
    """Deliveries in the daemon's store, read beside it as another process would."""
    store = await Store.open(f"sqlite:///{config_dir / 'daemon.db'}")
    try:
        return len(await store.outbox.deliveries())
    finally:
        await store.close()


@pytest.mark.parametrize("workers", [0, 2])
async def test_first_start_is_quiet_then_a_new_page_is_alerted(
    tmp_path: Path, archive: Path, workers: int
) -> None:
    # After the first poll every new page alerts whatever its date, so a test
    # that straddles midnight UTC is still right: the date is only a plausible one.
    today = day_key(datetime.now(UTC).date())
    async with running_receiver() as receiver, aiohttp.ClientSession() as session:
        config = write_config(tmp_path, archive, receiver.url, backfill_days=0, workers=workers)
        async with feedbot_run(config) as daemon:
            await daemon.first_poll(session)
            # backfill_days = 0 and the archive holds only a 2007 page: nobody is told.
            assert await queued_deliveries(tmp_path) == 0
            assert receiver.received == []
            write_page(archive, today, "dam-burst", "A dam bursts", story="Floods")
            await until(lambda: len(receiver.received) >= 1)
            assert event_ids(receiver) == [f"{today}/dam-burst"]
            async with session.get(f"{daemon.url}/feeds/topics/floods.atom") as response:
                assert response.status == 200
                assert "A dam bursts" in await response.text()

            # Counted by the daemon, whichever process delivered it (a worker
            # reports it once the attempt is recorded: ask until it has).
            async def counted() -> bool:
                delivered = await daemon.metric(
                    session, "feedbot_deliveries_total", outcome="delivered"
                )
                return delivered == 1

            await until_async(counted)
            helpers = children_of(daemon.pid)
            daemon.process.send_signal(signal.SIGTERM)
            assert await daemon.wait() == 0, daemon.log
            # Delivery workers (and multiprocessing's helpers) end with the daemon.
            await until(lambda: not any(alive(pid) for pid in helpers))
    assert len(receiver.received) == 1


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


HELD_AFTER = 10  # the receiver answers this many requests, then holds the rest


@pytest.mark.parametrize("workers", [0, 2])
async def test_kill_9_mid_burst_loses_no_alert(tmp_path: Path, archive: Path, workers: int) -> None:
    today = day_key(datetime.now(UTC).date())
    released = asyncio.Event()
    async with running_receiver() as receiver, aiohttp.ClientSession() as session:

        async def answer(_request: web.Request, n: int) -> web.StreamResponse:
            # Past the first few, requests are held unanswered until the daemon
            # is killed: the kill lands mid-burst with alerts in flight, however
            # fast or slow the machine is.
            if n > HELD_AFTER:
                await released.wait()
            return web.Response(status=204)

        receiver.answer = answer
        config = write_config(
            tmp_path,
            archive,
            receiver.url,
            backfill_days=0,
            per_host=2,
            workers=workers,
            timeout=300,  # a held request must not time out before the kill
        )
        async with feedbot_run(config) as daemon:
            await daemon.first_poll(session)
            for i in range(60):
                write_page(archive, today, f"burst-{i:02d}", f"Burst event {i}")
            await until(lambda: len(receiver.received) > HELD_AFTER)  # one is in flight
            orphans = children_of(daemon.pid)
            assert len(orphans) >= workers
            os.kill(daemon.pid, signal.SIGKILL)
            await daemon.wait()
        # Delivery workers (and multiprocessing's helpers) see the daemon go and end.
        await until(lambda: not any(alive(pid) for pid in orphans))
        assert len(receiver.received) < 60, "the burst finished before the kill"
        released.set()
        async with feedbot_run(config):
            await until(lambda: len(set(event_ids(receiver))) == 60)
    ids = event_ids(receiver)
    assert set(ids) == {f"{today}/burst-{i:02d}" for i in range(60)}
    # Duplicates (sent before the kill, recorded after) keep their webhook-id.
    webhook_ids: dict[str, set[str]] = {}
    for event_id, received in zip(ids, receiver.received, strict=True):
        webhook_ids.setdefault(event_id, set()).add(received.headers["webhook-id"])
    assert all(len(v) == 1 for v in webhook_ids.values())
    assert len(ids) > 60, "no alert was in flight at the kill: nothing was resent"


async def failed_start(*args: str) -> tuple[int | None, list[str]]:
    """Run ``python -m feedbot ARGS`` to its end: its exit status and stderr lines."""
    returncode, _out, err = await feedbot_cli(*args)
    return returncode, err.strip().splitlines()


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
        config = write_config(tmp_path, archive, "http://127.0.0.1:9/", port=port)
        returncode, lines = await failed_start(
            "--config", str(config), "--log-level", "error", "run"
        )
    assert returncode == 2
    assert lines == [f"feedbot: cannot listen on 127.0.0.1:{port}: Address already in use"], lines
