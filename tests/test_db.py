"""The store's transactions (feedbot/store/_db.py): a read waits for no writer,
a read cannot write (SQLite), and writers serialize within and across processes
(SQLite's write lock taken at BEGIN); the plain SQL of bulk writes, as each
driver reads it."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from feedbot.errors import StorageError
from feedbot.store import Store
from feedbot.store._db import PlainSql
from feedbot.store.schema import meta, polls
from feedbot.store.store import PollRecord
from tests.conftest import PATIENCE, REPO

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RECORD = PollRecord(T0, T0 + timedelta(seconds=1), "ok", 1, 0, 0, 0)


async def test_a_read_does_not_wait_for_an_open_write(store: Store) -> None:
    writing, finish = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with store._db.transaction() as connection:
            await connection.execute(polls.insert().values(asdict(RECORD)))
            writing.set()
            await finish.wait()

    writer = asyncio.create_task(write())
    try:
        await asyncio.wait_for(writing.wait(), PATIENCE)
        # The write transaction is open: a read answers now, with what was
        # committed before it.
        assert await asyncio.wait_for(store.last_poll(), PATIENCE) is None
        assert await asyncio.wait_for(store.count_events(), PATIENCE) == 0
    finally:
        finish.set()
        await writer
    assert await store.last_poll() == RECORD


async def test_a_read_on_sqlite_cannot_write(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    try:
        with pytest.raises(StorageError, match="readonly"):
            async with store._db.read() as connection:
                await connection.execute(polls.insert().values(asdict(RECORD)))
        # The pooled connection writes again when a write transaction takes it.
        await store.record_poll(RECORD)
        assert await store.last_poll() == RECORD
    finally:
        await store.close()


# A writer: opens the store, says "ready", waits for a line, then increments the
# meta key "counter" ROUNDS times from each of TASKS tasks, each increment a read
# and a write in one transaction.
_WRITER = """
import asyncio, sys
from sqlalchemy import select
from feedbot.store import Store
from feedbot.store.schema import meta

async def increment(store, rounds):
    for _ in range(rounds):
        async with store._db.transaction() as connection:
            row = await connection.execute(select(meta.c.value).where(meta.c.key == "counter"))
            value = int(row.scalar_one_or_none() or 0)
            await store._db.insert_rows(
                connection, meta, [{"key": "counter", "value": str(value + 1)}],
                keys=["key"], on_conflict="update",
            )

async def main(url, tasks, rounds):
    store = await Store.open(url)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    try:
        await asyncio.gather(*(increment(store, rounds) for _ in range(tasks)))
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""
PROCESSES, TASKS, ROUNDS = 2, 2, 40


async def test_writers_in_two_processes_on_sqlite_serialize(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedbot.db'}"
    store = await Store.open(url)
    try:
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WRITER,
                url,
                str(TASKS),
                str(ROUNDS),
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(PROCESSES)
        ]
        for writer in writers:
            assert writer.stdout is not None
            assert await asyncio.wait_for(writer.stdout.readline(), PATIENCE) == b"ready\n"
        for writer in writers:  # both start writing together
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
        for writer in writers:
            _out, err = await asyncio.wait_for(writer.communicate(), PATIENCE)
            assert writer.returncode == 0, err.decode()
        async with store._db.read() as connection:
            row = await connection.execute(select(meta.c.value).where(meta.c.key == "counter"))
            # No increment lost, none refused ("database is locked").
            assert int(row.scalar_one()) == PROCESSES * TASKS * ROUNDS
    finally:
        await store.close()


_UPDATE = PlainSql("UPDATE t SET a = {a}, b = COALESCE({b}, b) WHERE id = {id} AND a <> {a}")


def test_plain_sql_for_a_driver_that_numbers_its_parameters() -> None:
    sql, layout = _UPDATE.plan(postgresql.asyncpg.dialect(), ("id", "a", "b"))
    assert sql == "UPDATE t SET a = $1, b = COALESCE($2, b) WHERE id = $3 AND a <> $1"
    assert [index for index, _process in layout] == [1, 2, 0]  # a, b, id


def test_plain_sql_for_a_driver_of_question_marks() -> None:
    sql, layout = _UPDATE.plan(sqlite.dialect(), ("id", "a", "b"))
    assert sql == "UPDATE t SET a = ?, b = COALESCE(?, b) WHERE id = ? AND a <> ?"
    assert [index for index, _process in layout] == [1, 2, 0, 1]  # a, b, id, a


def test_plain_sql_names_a_parameter_no_row_has() -> None:
    with pytest.raises(ValueError, match=r"\{b\}"):
        _UPDATE.plan(sqlite.dialect(), ("id", "a"))
