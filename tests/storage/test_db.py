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
