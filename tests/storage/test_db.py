"""Engine behaviour that the rest relies on."""

import asyncio
import time
from pathlib import Path

import sqlalchemy as sa

from storage import db, outbox


async def test_sqlite_readers_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        await db.migrate(engine)
        async with engine.begin() as writer:
            await writer.execute(sa.text("CREATE TABLE scratch (n integer)"))
            # The write transaction stays open; a readiness probe must still answer at once.
            started = time.monotonic()
            await asyncio.wait_for(db.ping(engine), timeout=2)
            assert time.monotonic() - started < 1
    finally:
        await engine.dispose()


async def test_sqlite_writers_of_one_process_wait_their_turn_in_line(tmp_path: Path) -> None:
    """A write transaction does not start (nor wait in SQLite's busy handler, which sleeps
    between tries) while another of the same engine is open: it starts once that one has
    committed and given its connection back, and those waiting go in the order they came."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    events: list[str] = []

    @sa.event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(connection, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "scratch" in statement:
            events.append(statement.split("(")[1].split(")")[0])
        elif statement == "BEGIN IMMEDIATE":
            events.append("begin")

    @sa.event.listens_for(engine.sync_engine, "commit")
    def _commit(connection) -> None:  # type: ignore[no-untyped-def]
        events.append("commit")

    async def write(name: str, hold: float) -> None:
        async with engine.begin() as connection:
            await connection.execute(sa.text(f"INSERT INTO scratch VALUES ('{name}')"))
            await asyncio.sleep(hold)

    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("CREATE TABLE scratch (name text)"))
        # Connections made beforehand, so each writer is in line as soon as it starts.
        connections = [await engine.connect() for _ in range(4)]
        for connection in connections:
            await connection.close()
        events.clear()
        writers = [asyncio.create_task(write("a", 0.5))]
        for name in "bcd":
            await asyncio.sleep(0.1)
            writers.append(asyncio.create_task(write(name, 0)))
        await asyncio.gather(*writers)
        assert events == [
            *("begin", "'a'", "commit"),
            *("begin", "'b'", "commit"),
            *("begin", "'c'", "commit"),
            *("begin", "'d'", "commit"),
        ]
    finally:
        await engine.dispose()


async def test_a_connection_keeps_its_turn_between_its_own_transactions(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as connection:
            for n in range(3):
                async with connection.begin():
                    await connection.execute(sa.text(f"CREATE TABLE t{n} (n integer)"))
        # Given back with the connection: another writer goes at once.
        async with engine.begin() as other:
            await asyncio.wait_for(other.execute(sa.text("CREATE TABLE t9 (n integer)")), 2)
    finally:
        await engine.dispose()


async def test_outbox_effects_are_unique_by_idempotency_key(engine) -> None:
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        assert await outbox.enqueue(
            session, kind="slack.post", payload={"a": 1}, idempotency_key="k"
        )
        assert not await outbox.enqueue(
            session, kind="slack.post", payload={"a": 2}, idempotency_key="k"
        )
        assert await outbox.enqueue(session, kind="slack.post", payload={}, idempotency_key="k2")
        assert await outbox.depth(session) == 2
