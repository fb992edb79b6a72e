"""The engine handle shared by the store's parts: transactions with errors converted
at the boundary, and the upserts that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from feedbot.errors import StorageError

CHUNK = 500  # ids per IN (...) clause: far below every backend's parameter limit


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name  # "sqlite" or "postgresql"
        self.where = engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; any database failure leaves as StorageError."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise StorageError(f"store {self.where}: {reason}") from exc
        except OSError as exc:
            raise StorageError(f"store {self.where} unreachable: {exc}") from exc

    async def upsert(
        self,
        connection: AsyncConnection,
        table: Table,
        rows: list[dict[str, Any]],
        *,
        keys: list[str],
    ) -> None:
        statement = self._insert(table)
        columns = {c: statement.excluded[c] for c in rows[0] if c not in keys}
        await connection.execute(
            statement.on_conflict_do_update(index_elements=keys, set_=columns), rows
        )

    async def insert_missing(
        self,
        connection: AsyncConnection,
        table: Table,
        rows: list[dict[str, Any]],
        *,
        keys: list[str],
    ) -> None:
        statement = self._insert(table)
        await connection.execute(statement.on_conflict_do_nothing(index_elements=keys), rows)

    def _insert(self, table: Table) -> Any:
        return (postgresql.insert if self.backend == "postgresql" else sqlite.insert)(table)


def chunks(items: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
