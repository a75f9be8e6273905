"""`SharedWrites`: the writes of concurrent clicks in shared transactions, on both databases."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.slack.writes import SharedWrites
from storage import audit, db
from storage.models import AuditEvent


def entry(actor: str):
    """A piece of work: one audit entry by `actor`; returns the actor."""

    async def work(session: AsyncSession) -> str:
        audit.record(session, actor=actor, source="slack", action="button approve")
        await session.flush()
        return actor

    return work


async def actors(engine: AsyncEngine) -> list[str]:
    async with db.session_factory(engine)() as session:
        rows = await session.execute(sa.select(AuditEvent.actor).order_by(AuditEvent.id))
        return list(rows.scalars())


def transactions(engine: AsyncEngine) -> list[int]:
    begun: list[int] = []
    event.listen(engine.sync_engine, "begin", lambda _connection: begun.append(1))
    return begun


async def test_pieces_that_come_together_share_one_transaction(engine: AsyncEngine) -> None:
    writes = SharedWrites(db.session_factory(engine))
    begun = transactions(engine)
    results = await asyncio.gather(*(writes.run(entry(f"U{n}")) for n in range(10)))
    assert results == [f"U{n}" for n in range(10)]
    assert len(begun) == 1
    assert await actors(engine) == [f"U{n}" for n in range(10)]


async def test_each_caller_returns_once_its_writes_are_committed(engine: AsyncEngine) -> None:
    writes = SharedWrites(db.session_factory(engine))

    async def one(n: int) -> None:
        await writes.run(entry(f"U{n}"))
        assert f"U{n}" in await actors(engine)  # read on another connection

    await asyncio.gather(*(one(n) for n in range(5)))


async def test_a_piece_that_raises_fails_its_caller_alone(engine: AsyncEngine) -> None:
    writes = SharedWrites(db.session_factory(engine))

    async def broken(session: AsyncSession) -> None:
        audit.record(session, actor="UBROKEN", source="slack", action="button approve")
        await session.flush()
        raise RuntimeError("no")

    outcomes = await asyncio.gather(
        writes.run(entry("U1")),
        writes.run(broken),
        writes.run(entry("U2")),
        return_exceptions=True,
    )
    assert outcomes[0] == "U1" and outcomes[2] == "U2"
    assert isinstance(outcomes[1], RuntimeError)
    assert await actors(engine) == ["U1", "U2"]  # nothing of the broken piece is kept


async def test_a_lone_piece_is_written_at_once_and_a_later_one_in_its_own_transaction(
    engine: AsyncEngine,
) -> None:
    writes = SharedWrites(db.session_factory(engine))
    begun = transactions(engine)
    assert await writes.run(entry("U1")) == "U1"
    assert await writes.run(entry("U2")) == "U2"
    assert len(begun) == 2


@pytest.mark.parametrize("limit", [1, 3])
async def test_no_transaction_holds_more_than_limit_pieces(engine: AsyncEngine, limit: int) -> None:
    writes = SharedWrites(db.session_factory(engine), limit=limit)
    begun = transactions(engine)
    await asyncio.gather(*(writes.run(entry(f"U{n}")) for n in range(7)))
    assert len(begun) == -(-7 // limit)
    assert await actors(engine) == [f"U{n}" for n in range(7)]
