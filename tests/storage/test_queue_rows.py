"""The queue's rows on SQLite and PostgreSQL: which queued requests the scheduler looks at,
and which count as waiting ahead of a new request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.pipeline.locks import Lock
from bot.pipeline.models import Person, Status
from storage import db, locks, releases
from storage.models import Release, Rollout

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REPO = "acme/api"


async def rows(engine: AsyncEngine, *specs: tuple[str, str, dict]) -> list[int]:
    """One release and a rollout per (environment, status, fields); their ids in order."""
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        release = Release(repository=REPO, commit_sha="a" * 40, pipeline="")
        session.add(release)
        await session.flush()
        ids = []
        for environment, status, fields in specs:
            row = Rollout(
                release_id=release.id or 0,
                repository=REPO,
                environment=environment,
                commit_sha="a" * 40,
                status=status,
                **fields,
            )
            session.add(row)
            await session.flush()
            ids.append(row.id or 0)
        return ids


async def test_a_busy_environment_queue_does_not_fill_the_batch(engine: AsyncEngine) -> None:
    await db.migrate(engine)
    queued = Status.QUEUED.value
    ids = await rows(
        engine,
        ("stage", Status.VERIFYING.value, {}),
        *[("stage", queued, {}) for _ in range(3)],
        ("dev", queued, {}),
        ("dev", queued, {"next_check_at": NOW + timedelta(minutes=1)}),
    )
    sessions = db.session_factory(engine)
    async with sessions() as session:
        due = await releases.queued(session, now=NOW, limit=2)
    assert [row.id for row in due] == [ids[4]]  # stage is busy; the other dev one waits
    async with sessions.begin() as session:
        await releases.wake_queue(session, repository=REPO, environment="DEV")
    async with sessions() as session:
        due = await releases.queued(session, now=NOW, limit=5)
    assert [row.id for row in due] == [ids[4], ids[5]]


async def test_waiting_counts_ready_requests_before_this_one(engine: AsyncEngine) -> None:
    await db.migrate(engine)
    queued = Status.QUEUED.value
    ids = await rows(
        engine,
        ("stage", queued, {"requested_by_github": "bob"}),
        ("stage", queued, {"requested_by_github": "carol", "wait_checks": True}),
        ("stage", queued, {"requested_by_github": "alice"}),
        ("stage", queued, {"requested_by_github": "dave"}),
    )
    sessions = db.session_factory(engine)
    async with sessions() as session:
        every = await releases.environment_history(
            session, repository=REPO, environment="stage", now=NOW
        )
        before_dave = await releases.environment_history(
            session, repository=REPO, environment="stage", now=NOW, before=ids[3]
        )
    # carol's waits for her checks: she holds nobody up.
    assert (every.waiting, before_dave.waiting) == (3, 2)
    async with sessions.begin() as session:
        await locks.put(
            session,
            repository=REPO,
            lock=Lock(
                environment="stage",
                holder=Person(github="alice"),
                since=NOW,
                expires_at=NOW + timedelta(hours=1),
            ),
            now=NOW,
        )
    async with sessions() as session:
        locked = await releases.environment_history(
            session, repository=REPO, environment="stage", now=NOW
        )
    # alice holds the lock: the others wait for it, so only her own request is ready.
    assert locked.waiting == 1
