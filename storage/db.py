"""Engines and sessions from one `DATABASE_URL`, and migrations to head.

`sqlite:///path` runs on aiosqlite (WAL, busy timeout, `BEGIN IMMEDIATE` so a transaction
that writes never fails half-way on a lock upgrade); `postgresql://` runs on asyncpg.
Nothing here runs at import time: callers create the engine and pass it on.

On SQLite each commit is synced to disk (`synchronous=FULL`: an answered webhook survives a
power cut; group commit keeps that to one sync for many deliveries), and the write-ahead
log is copied into the database by `checkpoints()` from its own connection, not by
whichever commit happens to fill it while a request waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
# Any constant works: it only has to be the same in every replica that migrates.
_MIGRATION_LOCK_KEY = 0x6465706C6F79


def async_url(url: str) -> sa.URL:
    """The SQLAlchemy URL with the async driver for a `sqlite:///` or `postgresql://` URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`, configured for safe concurrent use."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        database = target.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            target, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(target, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so "begin" below decides how it starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        # A backstop only: `checkpoints()` keeps the log far below this (pages of 4 kB).
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    turns = _WriteTurns()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("sqlite_read_only", False):
            connection.exec_driver_sql("BEGIN DEFERRED")
            return
        record = connection.connection._connection_record
        turns.take(record)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turns.give_back(record)
            raise

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        turns.give_back(record)


class _WriteTurns:
    """The write transactions of one engine in this process, one at a time, in line.

    SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps
    1, 2, 5, 10 … ms between tries and so lets the lock sit idle after it is freed: with
    the webhook route's group commits and the inbox worker's claims taking turns, the core
    stood idle a third of the time. Waiting here instead, a writer starts as soon as the one
    before it has committed and given its connection back. Other processes on the same
    file still meet the busy handler, as before.
    """

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: object | None = None

    def take(self, record: object) -> None:
        """Wait (inside SQLAlchemy's async bridge) until `record`'s connection may write."""
        if self._holder is record:
            return  # its last transaction ended, but it has not given the connection back
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop, self._holder = asyncio.Lock(), loop, None
        try:
            await_(asyncio.wait_for(self._lock.acquire(), SQLITE_BUSY_TIMEOUT_MS / 1000))
        except TimeoutError:
            raise sa.exc.OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            ) from None
        self._holder = record

    def give_back(self, record: object) -> None:
        if self._holder is record and self._lock is not None:
            self._holder = None
            self._lock.release()


async def checkpoints(engine: AsyncEngine, *, every: float = 1.0) -> None:
    """Until cancelled, copy a SQLite database's write-ahead log into the database file
    (a passive checkpoint: it never waits for, nor holds up, the engine's reads and
    writes). Does nothing for other databases or an in-memory SQLite."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    database = url.database

    def checkpoint() -> None:
        path = Path(database).expanduser()
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as connection:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(checkpoint)
        except sqlite3.Error as exc:  # busy or gone: the next round tries again
            log.warning("sqlite checkpoint failed", error=str(exc))


def reading(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for transactions that only read: on SQLite they start deferred, so
    they read beside a writer (WAL) instead of queueing for the write lock."""
    return engine.execution_options(sqlite_read_only=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (no lazy reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def read_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """`session_factory` on `reading(engine)`: sessions for transactions that only read."""
    return session_factory(reading(engine))


def insert(session: AsyncSession, table: type[Any]) -> Any:
    """An INSERT with `on_conflict_do_nothing`, in the session's database dialect."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers a trivial query."""
    async with reading(engine).connect() as connection:
        await connection.execute(sa.text("SELECT 1"))


def alembic_config() -> Config:
    """Alembic's configuration, found through the installed package (any working directory)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema; replicas that start together take turns on PostgreSQL."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade, revision)


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
