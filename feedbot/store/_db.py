"""The engine handle shared by the store's parts: transactions with errors converted
at the boundary, and the upserts that differ between SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from itertools import repeat
from operator import itemgetter
from typing import Any, Literal, TypeVar

from sqlalchemy import Table, bindparam, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

from feedbot.errors import ConflictError, StorageError, UnavailableError

T = TypeVar("T")
# What says the database is out of reach or out of time, not that the request was
# wrong: a lost connection, a lock held past the timeout, a full pool.
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
CHUNK = 500  # ids per IN (...) clause: far below every backend's parameter limit


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name  # "sqlite" or "postgresql"
        self.where = engine.url.render_as_string(hide_password=True)
        self._one_writer: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if self.backend == "sqlite" else contextlib.nullcontext()
        )
        # The same pool; on SQLite its transactions begin DEFERRED, read only.
        self._reader = engine.execution_options(**{_READ: True})
        if self.backend == "sqlite" and not event.contains(
            engine.sync_engine, "begin", _sqlite_begin
        ):
            event.listen(engine.sync_engine, "connect", _sqlite_no_driver_transactions)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        # Statements built once per table and column list (and conflict handling).
        self._inserts: dict[tuple[str, tuple[str, ...], tuple[str, ...], bool], UpdateBase] = {}
        self._plans: dict[tuple[UpdateBase, tuple[str, ...]], tuple[str, _Layout]] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that may write; any database failure leaves as
        StorageError: a :class:`ConflictError` when a constraint refused a write,
        an :class:`UnavailableError` when the database was out of reach or out of
        time, a plain StorageError otherwise.

        On SQLite it holds the file's write lock from its start (``BEGIN
        IMMEDIATE``): what it reads is what its writes apply to, and another
        process's writer waits for it on the busy timeout. Within a process
        these transactions also run one at a time: two of this process's
        connections writing at once were seen to stall each other for the whole
        busy timeout (10 s, then "database is locked"; tests/test_deliver.py's
        hanging-receiver test failed about one run in ten that way).
        """
        with self._converted():
            async with self._one_writer, self.engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that only reads, errors converted as by
        :meth:`transaction`. It waits for no writer: on SQLite (WAL) it reads the
        last committed state while a write transaction runs, and a write in it
        fails ("attempt to write a readonly database")."""
        with self._converted():
            async with self._reader.begin() as connection:
                yield connection

    @contextlib.contextmanager
    def _converted(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            message = f"store {self.where}: {reason}"
            if isinstance(exc, IntegrityError):
                raise ConflictError(message, where=self.where, reason=reason) from exc
            if isinstance(exc, _UNAVAILABLE):
                raise UnavailableError(message, where=self.where, reason=reason) from exc
            raise StorageError(message) from exc
        except OSError as exc:
            raise UnavailableError(
                f"store {self.where} unreachable: {exc}", where=self.where, reason=str(exc)
            ) from exc

    async def insert_rows(
        self,
        connection: AsyncConnection,
        table: Table,
        rows: list[dict[str, Any]],
        *,
        keys: list[str],
        on_conflict: Literal["update", "ignore"],
    ) -> None:
        """Insert ``rows``; a row whose ``keys`` exist already updates that row
        (``"update"``) or is left as it is (``"ignore"``)."""
        if not rows:
            return
        names = tuple(rows[0])
        update = on_conflict == "update"
        cache_key = (table.name, names, tuple(keys), update)
        statement = self._inserts.get(cache_key)
        if statement is None:
            insert = self._insert(table).values({name: bindparam(name) for name in names})
            if update:
                changes = {c: insert.excluded[c] for c in names if c not in keys}
                statement = insert.on_conflict_do_update(index_elements=keys, set_=changes)
            else:
                statement = insert.on_conflict_do_nothing(index_elements=keys)
            self._inserts[cache_key] = statement
        values = itemgetter(*names)
        tuples = (
            [values(row) for row in rows] if len(names) > 1 else [(values(row),) for row in rows]
        )
        await self.execute_many(connection, statement, names, tuples)

    async def bulk_insert(
        self,
        connection: AsyncConnection,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Insert many rows (tuples of ``columns``), in primary-key order: consecutive
        inserts then land on the same index pages, which matters once the indexes
        outgrow the page cache."""
        if not rows:
            return
        primary = [columns.index(c.name) for c in table.primary_key.columns if c.name in columns]
        if primary:
            rows = sorted(rows, key=itemgetter(*primary))
        key = (table.name, tuple(columns), (), False)
        statement = self._inserts.get(key)
        if statement is None:
            statement = self._inserts[key] = table.insert().values(
                {name: bindparam(name) for name in columns}
            )
        await self.execute_many(connection, statement, columns, rows)

    async def execute_many(
        self,
        connection: AsyncConnection,
        statement: UpdateBase,
        names: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Run ``statement`` once per row through the driver's executemany; a row
        holds the values of the bind parameters ``names``, in that order.

        SQLAlchemy's executemany processes every parameter of every row in Python,
        which costs more than SQLite's own work on a first ingest of a large
        archive or a burst of delivery results; here each parameter's bind
        processor runs once per distinct value, column by column, and the rest is
        the driver's. Same result as
        ``connection.execute(statement, [dict(zip(names, row)) for row in rows])``.
        """
        if not rows:
            return
        plan = self._plans.get((statement, tuple(names)))
        if plan is None:
            plan = self._plans[(statement, tuple(names))] = _plan(connection, statement, names)
        if plan is _ORDINARY:  # an unexpected driver: SQLAlchemy's own executemany
            await connection.execute(
                statement, [dict(zip(names, row, strict=True)) for row in rows]
            )
            return
        sql, layout = plan
        given = list(zip(*rows, strict=True))
        columns = [
            repeat(constant, len(rows))
            if index is None
            else (map(_memoized(process), given[index]) if process else given[index])
            for index, constant, process in layout
        ]
        await connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))

    def _insert(self, table: Table) -> Any:
        return (postgresql.insert if self.backend == "postgresql" else sqlite.insert)(table)


def _sqlite_no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
    # The driver would begin transactions itself, DEFERRED and only before a
    # write; _sqlite_begin begins every transaction instead.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    # A write transaction begins IMMEDIATE: it takes the file's write lock at its
    # start, so what it reads is what its writes apply to, and another process's
    # writer waits for it (busy_timeout) instead of failing to upgrade a read lock
    # later. A read begins DEFERRED, on a connection that refuses writes
    # (query_only, switched only when the pooled connection changes role).
    reading = bool(connection.get_execution_options().get(_READ, False))
    if connection.info.get(_QUERY_ONLY, False) != reading:
        connection.exec_driver_sql(f"PRAGMA query_only = {int(reading)}")
        connection.info[_QUERY_ONLY] = reading
    connection.exec_driver_sql("BEGIN DEFERRED" if reading else "BEGIN IMMEDIATE")


_READ = "feedbot_read"  # execution option of Database.read's engine
_QUERY_ONLY = "feedbot_query_only"  # Connection.info key: PRAGMA query_only is on


# Where each parameter of a compiled statement comes from: a row's value at
# ``index`` (through ``process`` when its type has one), or a ``constant`` of the
# statement's own (the 1 of "attempts + 1").
_Layout = list[tuple[int | None, Any, Callable[[Any], Any] | None]]
_ORDINARY: tuple[str, _Layout] = ("", [])  # the plan of a driver whose parameters we do not lay out


def _plan(
    connection: AsyncConnection, statement: UpdateBase, names: Sequence[str]
) -> tuple[str, _Layout]:
    dialect = connection.dialect
    compiled: Any = statement.compile(dialect=dialect)
    order = compiled.positiontup
    if order is None or dialect.paramstyle not in ("qmark", "numeric_dollar"):
        return _ORDINARY
    where = {name: index for index, name in enumerate(names)}
    layout: _Layout = []
    for name in order:
        process = compiled.binds[name].type.bind_processor(dialect)
        if name in where:
            layout.append((where[name], None, process))
        else:
            value = compiled.binds[name].effective_value
            layout.append((None, process(value) if process else value, None))
    return compiled.string, layout


_MISSING = object()


def _memoized(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` once per distinct value: the rows of a batch share most of their
    timestamps and kinds."""
    done: dict[Any, Any] = {}

    def memoized(value: Any) -> Any:
        result = done.get(value, _MISSING)
        if result is _MISSING:
            result = done[value] = process(value)
        return result

    return memoized


def chunks(items: Iterable[T]) -> Iterable[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
