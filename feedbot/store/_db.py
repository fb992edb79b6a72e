"""The engine handle shared by the store's parts: write transactions (one writer at
a time on SQLite) and reads that wait for none, errors converted at the boundary,
and bulk inserts, upserts and updates run as plain SQL through the driver's
executemany."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from string import Formatter
from typing import Any, Literal, TypeVar

from sqlalchemy import Table, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeEngine

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
        # Statements built once per table and column list (and conflict handling),
        # and their text for the driver once per statement and parameter order.
        self._inserts: dict[
            tuple[str, tuple[str, ...], tuple[str, ...] | None, bool], PlainSql
        ] = {}
        self._plans: dict[tuple[PlainSql, tuple[str, ...]], tuple[str, _Layout]] = {}

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
        values = itemgetter(*names)
        tuples = (
            [values(row) for row in rows] if len(names) > 1 else [(values(row),) for row in rows]
        )
        statement = self._insert_sql(table, names, tuple(keys), on_conflict == "update")
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
        statement = self._insert_sql(table, tuple(columns), None, False)
        await self.execute_many(connection, statement, columns, rows)

    async def execute_many(
        self,
        connection: AsyncConnection,
        statement: PlainSql,
        names: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Run ``statement`` once per row through the driver's executemany
        (``exec_driver_sql``); a row holds the values of the parameters ``names``,
        in that order.

        SQLAlchemy's executemany processes every parameter of every row in Python,
        which costs more than SQLite's own work on a first ingest of a large
        archive or a burst of delivery results; here each parameter's bind
        processor runs once per distinct value, column by column, and the rest is
        the driver's.
        """
        if not rows:
            return
        key = (statement, tuple(names))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = statement.plan(connection.dialect, names)
        sql, layout = plan
        given = list(zip(*rows, strict=True))
        columns = [
            map(_memoized(process), given[index]) if process else given[index]
            for index, process in layout
        ]
        await connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))

    def _insert_sql(
        self, table: Table, names: tuple[str, ...], keys: tuple[str, ...] | None, update: bool
    ) -> PlainSql:
        """The INSERT of ``names`` into ``table``; with ``keys``, a row whose keys
        exist already updates the other columns (``update``) or is skipped."""
        cache_key = (table.name, names, keys, update)
        statement = self._inserts.get(cache_key)
        if statement is not None:
            return statement
        for column in table.columns:
            # Plain SQL applies the database's defaults only, not SQLAlchemy's.
            if column.default is not None and column.name not in names:
                raise ValueError(f"{table.name}.{column.name} has a default SQL would not apply")
        sql = (
            f"INSERT INTO {_quoted(table.name)} ({', '.join(map(_quoted, names))})"
            f" VALUES ({', '.join('{' + name + '}' for name in names)})"
        )
        if keys is not None:
            changes = [name for name in names if name not in keys]
            sql += f" ON CONFLICT ({', '.join(map(_quoted, keys))})"
            if update and changes:
                sets = (f"{_quoted(c)} = excluded.{_quoted(c)}" for c in changes)
                sql += f" DO UPDATE SET {', '.join(sets)}"
            else:
                sql += " DO NOTHING"
        statement = PlainSql(sql, {name: table.c[name].type for name in names})
        self._inserts[cache_key] = statement
        return statement


@dataclass(frozen=True, eq=False)
class PlainSql:
    """A statement for :meth:`Database.execute_many`: SQL as the database reads it
    (the same text on SQLite and PostgreSQL), in which ``{name}`` stands for a
    parameter; ``types`` gives the column type of a parameter whose values need
    converting on the way in (a datetime: ``UTCDateTime``)."""

    sql: str
    types: Mapping[str, TypeEngine[Any]] = field(default_factory=dict)

    def plan(self, dialect: Dialect, names: Sequence[str]) -> tuple[str, _Layout]:
        """The text for ``dialect``'s driver, and where each of its parameters
        comes from: the index of its value in a row of ``names``, and the
        conversion of its type."""
        where = {name: index for index, name in enumerate(names)}
        numbered: dict[str, int] = {}  # a numeric paramstyle names a repeated parameter once
        parts: list[str] = []
        layout: _Layout = []
        for literal, name, _spec, _conversion in Formatter().parse(self.sql):
            parts.append(literal.replace("%", "%%") if dialect.paramstyle == "format" else literal)
            if name is None:
                continue
            if name not in where:
                raise ValueError(f"SQL parameter {{{name}}} is not among {list(names)}")
            if dialect.paramstyle in ("numeric_dollar", "numeric"):
                if name not in numbered:
                    numbered[name] = len(numbered) + 1
                    layout.append((where[name], self._processor(name, dialect)))
                mark = "$" if dialect.paramstyle == "numeric_dollar" else ":"
                parts.append(f"{mark}{numbered[name]}")
            elif dialect.paramstyle in ("qmark", "format"):
                layout.append((where[name], self._processor(name, dialect)))
                parts.append("?" if dialect.paramstyle == "qmark" else "%s")
            else:
                raise ValueError(f"driver paramstyle {dialect.paramstyle!r} is not supported")
        return "".join(parts), layout

    def _processor(self, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
        kind = self.types.get(name)
        return None if kind is None else kind.dialect_impl(dialect).bind_processor(dialect)


def _quoted(name: str) -> str:
    # The store's names are lower-case words: quoted, none can be a keyword.
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a table or column name of the store")
    return f'"{name}"'


_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Where each parameter of a statement's text comes from: a row's value at an
# index, through its type's conversion when it has one.
_Layout = list[tuple[int, Callable[[Any], Any] | None]]


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
