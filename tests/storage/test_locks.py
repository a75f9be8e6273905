"""Environment locks on SQLite and PostgreSQL: the database decides who wins a race.

Two people locking at once never both hear they hold the lock, a lock someone else holds
is never overwritten, and an unlock deletes only the lock it decided on.
"""

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import conductor
from bot.pipeline.config import parse_pipeline
from bot.pipeline.locks import DEFAULT_TTL, Lock, LockDecision
from bot.pipeline.models import Person
from storage import db, locks
from storage.models import Lock as LockRow

PIPELINE = parse_pipeline("environments: [{name: stage}, {name: production}]")
REPOSITORY = "acme/shop"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALICE = Person(github="alice", slack="U0ALICE")
BOB = Person(github="bob", slack="U0BOB")
ADMIN = Person(github="root", slack="U0ROOT")

Sessions = async_sessionmaker[AsyncSession]


def _lock(holder: Person, *, since: datetime = NOW, reason: str | None = None) -> Lock:
    return Lock(
        environment="production",
        holder=holder,
        since=since,
        expires_at=since + DEFAULT_TTL,
        reason=reason,
    )


async def _take(
    sessions: Sessions, person: Person, *, now: datetime = NOW, reason: str | None = None
) -> LockDecision:
    async with sessions.begin() as session:
        return await conductor.lock(
            session,
            source="slack",
            repository=REPOSITORY,
            pipeline=PIPELINE,
            environment="production",
            person=person,
            reason=reason,
            now=now,
        )


async def _release(
    sessions: Sessions, person: Person, *, now: datetime = NOW, is_admin: bool = False
) -> LockDecision:
    async with sessions.begin() as session:
        return await conductor.unlock(
            session,
            source="slack",
            repository=REPOSITORY,
            pipeline=PIPELINE,
            environment="production",
            person=person,
            is_admin=is_admin,
            now=now,
        )


async def _current(sessions: Sessions) -> Lock | None:
    async with sessions() as session:
        return await locks.get(session, repository=REPOSITORY, environment="production")


async def _rows(sessions: Sessions) -> int:
    async with sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(LockRow))).scalar_one()


async def _put(sessions: Sessions, lock: Lock, *, now: datetime = NOW) -> bool:
    async with sessions.begin() as session:
        return await locks.put(session, repository=REPOSITORY, lock=lock, now=now)


async def _delete(sessions: Sessions, lock: Lock) -> bool:
    async with sessions.begin() as session:
        return await locks.delete(session, repository=REPOSITORY, lock=lock)


# --- storage: the conditional writes -------------------------------------------------------


async def test_put_takes_a_free_lock_and_renews_its_holders(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert await _put(sessions, _lock(ALICE, reason="migration"))
    assert await _current(sessions) == _lock(ALICE, reason="migration")

    # Same person by Slack id alone, or by GitHub login whatever its case.
    by_slack = Lock("production", Person(slack="U0ALICE"), NOW, NOW + timedelta(hours=30), "more")
    assert await _put(sessions, by_slack, now=NOW + timedelta(hours=1))
    assert await _current(sessions) == by_slack
    back = Lock(
        "production", Person(github="alice", slack="U0ALICE"), NOW, NOW + timedelta(hours=40)
    )
    assert await _put(sessions, back, now=NOW + timedelta(hours=2))
    by_login = Lock("production", Person(github="ALICE"), NOW, NOW + timedelta(hours=50))
    assert await _put(sessions, by_login, now=NOW + timedelta(hours=3))
    assert await _current(sessions) == by_login
    assert await _rows(sessions) == 1


async def test_put_never_overwrites_a_lock_someone_else_holds(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert await _put(sessions, _lock(ALICE, reason="migration"))
    for later in (timedelta(0), timedelta(hours=1), DEFAULT_TTL - timedelta(seconds=1)):
        assert not await _put(sessions, _lock(BOB, since=NOW + later), now=NOW + later)
    # A different person who shares neither the login nor the Slack id is someone else.
    assert not await _put(sessions, _lock(Person(github="alice2", slack="U0ALICEX")))
    assert await _current(sessions) == _lock(ALICE, reason="migration")


async def test_put_takes_an_expired_lock_from_someone_else(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert await _put(sessions, _lock(ALICE))
    expiry = NOW + DEFAULT_TTL
    assert await _put(sessions, _lock(BOB, since=expiry), now=expiry)
    assert await _current(sessions) == _lock(BOB, since=expiry)
    # A lock without an expiry never expires.
    forever = Lock("production", BOB, NOW, None)
    assert await _put(sessions, forever, now=expiry)
    far = NOW + timedelta(days=365)
    assert not await _put(sessions, _lock(ALICE, since=far), now=far)
    assert await _current(sessions) == forever


async def test_delete_removes_only_the_lock_decided_on(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    alices = _lock(ALICE)
    assert await _put(sessions, alices)
    expiry = NOW + DEFAULT_TTL
    bobs = _lock(BOB, since=expiry)
    assert await _put(sessions, bobs, now=expiry)

    assert not await _delete(sessions, alices)  # it changed hands: Bob's stays
    assert await _current(sessions) == bobs
    assert not await _delete(sessions, _lock(BOB, since=NOW))  # Bob's, but an older one
    assert await _current(sessions) == bobs

    # A renewal keeps the lock's `since`: the holder's decision still names it.
    renewed = Lock("production", BOB, expiry, expiry + timedelta(hours=48), "longer")
    assert await _put(sessions, renewed, now=expiry + timedelta(hours=1))
    assert await _delete(sessions, bobs)
    assert await _current(sessions) is None
    assert not await _delete(sessions, bobs)


# --- conductor: re-read and decide again when the write did not take effect ---------------


async def test_the_holder_renews_and_others_are_refused(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    first = await _take(sessions, ALICE, reason="migration")
    assert not first.refused and "locked `production`" in first.announcement

    refused = await _take(sessions, BOB, now=NOW + timedelta(hours=1))
    assert refused.refused and "locked by alice" in (refused.refusal or "")

    later = NOW + timedelta(hours=2)
    renewed = await _take(sessions, Person(github="Alice"), now=later, reason="still")
    assert not renewed.refused and "renewed the lock on" in renewed.announcement
    current = await _current(sessions)
    assert current is not None
    assert (current.since, current.expires_at, current.reason) == (
        NOW,
        later + DEFAULT_TTL,
        "still",
    )

    refused = await _release(sessions, BOB, now=later)
    assert refused.refused and await _current(sessions) == current


async def test_an_expired_lock_can_be_taken_by_someone_else(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert not (await _take(sessions, ALICE)).refused
    expiry = NOW + DEFAULT_TTL
    taken = await _take(sessions, BOB, now=expiry, reason="hotfix")
    assert not taken.refused and "bob locked `production`" in taken.announcement
    assert await _current(sessions) == _lock(BOB, since=expiry, reason="hotfix")
    # Alice's own unlock no longer applies to the environment: Bob holds it now.
    assert (await _release(sessions, ALICE, now=expiry)).refused
    assert not (await _release(sessions, BOB, now=expiry)).refused
    assert await _rows(sessions) == 0


async def test_two_people_locking_at_once_get_one_holder(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read "no lock" before either writes wherever the database lets them (PostgreSQL;
    SQLite queues writing transactions, so there the second reads the first's lock)."""
    sessions = db.session_factory(engine)
    read = _after_reads(monkeypatch, wait_for=2)

    results = await asyncio.gather(_take(sessions, ALICE), _take(sessions, BOB))

    holders = [p for p, r in zip((ALICE, BOB), results, strict=True) if not r.refused]
    assert len(holders) == 1
    loser = BOB if holders == [ALICE] else ALICE
    refusal = next(r.refusal for r in results if r.refused)
    assert f"locked by {holders[0].label}" in (refusal or "")
    current = await _current(sessions)
    assert current is not None and current.holder == holders[0]
    assert not current.holder.same_as(loser)
    assert await _rows(sessions) == 1
    if engine.dialect.name == "postgresql":
        assert read.both_saw_no_lock  # the race really happened


async def test_an_unlock_after_the_lock_changed_hands_keeps_the_new_lock(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin decides on Alice's lock; before the delete, Alice's expired lock was taken
    by Bob. Bob keeps it and the admin hears who holds it now."""
    sessions = db.session_factory(engine)
    assert not (await _take(sessions, ALICE)).refused
    alices = await _current(sessions)
    assert alices is not None
    expiry = NOW + DEFAULT_TTL
    assert not (await _take(sessions, BOB, now=expiry)).refused
    bobs = await _current(sessions)

    real_get = locks.get
    calls = 0

    async def stale_first(session: AsyncSession, **kw: str) -> Lock | None:
        nonlocal calls
        calls += 1
        found = await real_get(session, **kw)
        return alices if calls == 1 else found

    monkeypatch.setattr(locks, "get", stale_first)
    # The admin's clock is an hour into Alice's lock (the request was slow to arrive).
    decision = await _release(sessions, ADMIN, now=NOW + timedelta(hours=1), is_admin=True)

    assert decision.refused and "just changed hands" in (decision.refusal or "")
    assert "locked by bob" in (decision.refusal or "")
    assert calls == 2
    assert await _current(sessions) == bobs


# PostgreSQL only: SQLite queues writing transactions, so this interleaving cannot happen.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_unlock_racing_a_new_lock_on_postgresql(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race with two live transactions: Bob takes the expired lock between the
    admin's read and delete."""
    sessions = db.session_factory(engine)
    assert not (await _take(sessions, ALICE)).refused
    expiry = NOW + DEFAULT_TTL

    real_get = locks.get
    calls = 0
    bobs_decision: list[LockDecision] = []

    async def then_bob_locks(session: AsyncSession, **kw: str) -> Lock | None:
        nonlocal calls
        calls += 1
        found = await real_get(session, **kw)
        if calls == 1:  # the admin's read; Bob's transaction runs and commits now
            monkeypatch.setattr(locks, "get", real_get)
            bobs_decision.append(await _take(sessions, BOB, now=expiry))
            monkeypatch.setattr(locks, "get", then_bob_locks)
        return found

    monkeypatch.setattr(locks, "get", then_bob_locks)
    decision = await _release(sessions, ADMIN, now=NOW + timedelta(hours=1), is_admin=True)

    assert not bobs_decision[0].refused
    assert decision.refused and "locked by bob" in (decision.refusal or "")
    assert await _current(sessions) == _lock(BOB, since=expiry)


async def test_an_unlock_by_the_holder_and_by_an_admin(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert not (await _take(sessions, ALICE)).refused
    assert (await _release(sessions, BOB)).refused
    assert (await _release(sessions, ADMIN, is_admin=False)).refused
    done = await _release(sessions, ADMIN, is_admin=True)
    assert not done.refused and "(held by alice)" in done.announcement
    assert await _current(sessions) is None
    assert (await _release(sessions, ALICE)).refusal == "`production` is not locked."

    assert not (await _take(sessions, ALICE)).refused
    assert not (await _release(sessions, Person(slack="U0ALICE"))).refused
    assert await _rows(sessions) == 0


class _Reads:
    both_saw_no_lock = False


def _after_reads(monkeypatch: pytest.MonkeyPatch, *, wait_for: int) -> _Reads:
    """Make each `locks.get` wait (briefly) until `wait_for` reads have happened."""
    real_get = locks.get
    seen: list[Lock | None] = []
    everyone_read = asyncio.Event()
    reads = _Reads()

    async def get(session: AsyncSession, **kw: str) -> Lock | None:
        found = await real_get(session, **kw)
        if everyone_read.is_set():
            return found
        seen.append(found)
        if len(seen) >= wait_for:
            reads.both_saw_no_lock = all(s is None for s in seen)
            everyone_read.set()
        else:
            await _within(everyone_read.wait(), seconds=0.5)
        return found

    monkeypatch.setattr(locks, "get", get)
    return reads


async def _within(waiting: Awaitable[object], *, seconds: float) -> None:
    try:
        await asyncio.wait_for(waiting, timeout=seconds)
    except TimeoutError:
        pass
