"""The inbox on SQLite and PostgreSQL: stored once, claimed once, retried, dead-lettered."""

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db, inbox
from storage.models import InboxItem, InboxStatus, utcnow


async def _record(sessions, delivery_id: str) -> bool:
    async with sessions.begin() as session:
        return await inbox.record_delivery(
            session, source="github", delivery_id=delivery_id, event="ping", action=None, body="{}"
        )


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return (
            await connection.execute(sa.select(sa.func.count()).select_from(InboxItem))
        ).scalar_one()


async def test_same_delivery_is_stored_once(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert await _record(sessions, "d-1") is True
    assert await _record(sessions, "d-1") is False
    assert await _record(sessions, "d-2") is True
    assert await _count(engine) == 2


async def test_concurrent_duplicates_store_one_row(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    results = await asyncio.gather(*(_record(sessions, "same") for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await _count(engine) == 1


async def test_two_engines_never_claim_one_row_twice(database_url: str) -> None:
    """Two engines (as two replicas would) race to claim 200 rows in small batches."""
    first, second = db.create_engine(database_url), db.create_engine(database_url)
    try:
        setup = db.session_factory(first)
        async with setup.begin() as session:
            for n in range(200):
                await inbox.record_delivery(
                    session,
                    source="github",
                    delivery_id=f"d{n}",
                    event="ping",
                    action=None,
                    body="{}",
                )

        async def drain(engine: AsyncEngine, owner: str) -> list[int]:
            sessions = db.session_factory(engine)
            claimed: list[int] = []
            while True:
                async with sessions.begin() as session:
                    items = await inbox.claim_due(
                        session, owner=owner, now=utcnow(), lease=timedelta(minutes=5), limit=7
                    )
                if not items:
                    return claimed
                claimed.extend(item.id for item in items)
                await asyncio.sleep(0)

        a, b = await asyncio.gather(drain(first, "a"), drain(second, "b"))
        assert len(a) + len(b) == 200
        assert set(a).isdisjoint(b)
        assert a and b, "both workers should have won some claims"
    finally:
        await first.dispose()
        await second.dispose()


async def test_expired_lease_is_claimable_again(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    await _record(sessions, "d")
    now = utcnow()
    async with sessions.begin() as session:
        (item,) = await inbox.claim_due(
            session, owner="dead-replica", now=now, lease=timedelta(seconds=30), limit=10
        )
    async with sessions.begin() as session:
        assert (
            await inbox.claim_due(
                session,
                owner="other",
                now=now + timedelta(seconds=10),
                lease=timedelta(seconds=30),
                limit=10,
            )
            == []
        )
    async with sessions.begin() as session:
        (again,) = await inbox.claim_due(
            session,
            owner="other",
            now=now + timedelta(seconds=31),
            lease=timedelta(seconds=30),
            limit=10,
        )
    assert again.id == item.id and again.lease_owner == "other"
    async with sessions.begin() as session:
        # The dead replica's late finish must not count: it no longer holds the lease.
        assert not await inbox.finish(
            session, item_id=item.id, owner="dead-replica", status=InboxStatus.DONE, now=now
        )


async def test_failures_retry_then_dead_letter_and_can_be_retried(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    await _record(sessions, "d")
    now = utcnow()
    async with sessions.begin() as session:
        (item,) = await inbox.claim_due(
            session, owner="w", now=now, lease=timedelta(seconds=30), limit=1
        )
        await inbox.fail(
            session,
            item=item,
            owner="w",
            error="boom",
            now=now,
            retry_at=now + timedelta(seconds=5),
        )
    async with sessions.begin() as session:
        assert await inbox.depth(session) == 1
        assert (
            await inbox.claim_due(session, owner="w", now=now, lease=timedelta(seconds=30), limit=1)
            == []
        )
        (item,) = await inbox.claim_due(
            session, owner="w", now=now + timedelta(seconds=6), lease=timedelta(seconds=30), limit=1
        )
        assert item.attempts == 1
        await inbox.fail(session, item=item, owner="w", error="x" * 10_000, now=now, retry_at=None)
    async with sessions.begin() as session:
        (dead,) = await inbox.dead_letters(session)
        assert dead.status == InboxStatus.DEAD and dead.attempts == 2
        assert dead.last_error == "x" * inbox.ERROR_LIMIT
        assert await inbox.depth(session) == 0
        assert await inbox.retry_dead(session, item_id=dead.id, now=now)
    async with sessions.begin() as session:
        assert await inbox.depth(session) == 1
