"""A commit deployed by name has one release of its own, however many ask at once; an open
pull request whose head it is carries it instead. On SQLite and PostgreSQL."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import db, releases
from storage.models import Release, Rollout, utcnow

_ROLLOUT_AT_0003 = sa.table(
    "rollout",
    *(
        sa.column(name)
        for name in (
            "release_id",
            "repository",
            "environment",
            "commit_sha",
            "kind",
            "status",
            "requested_via",
            "failure_streak",
            "version",
            "created_at",
            "updated_at",
        )
    ),
)
HEAD = ScriptDirectory.from_config(db.alembic_config()).get_current_head()

REPO = "acme/api"
SHA = "c0ffee" + "0" * 34


async def _for_commit(session: AsyncSession, sha: str = SHA, repository: str = REPO) -> Release:
    return await releases.release_for_commit(
        session,
        repository=repository,
        commit_sha=sha,
        title="Fix the thing",
        author="octocat",
        head_ref="main",
        commit_url=f"https://github.com/{repository}/commit/{sha}",
    )


async def _pull_request(sessions, number: int, *, state: str = "open", sha: str = SHA) -> int:
    async with sessions.begin() as session:
        row, _ = await releases.upsert_pull_request(
            session,
            repository=REPO,
            pr_number=number,
            head_sha=sha,
            title=f"PR {number}",
            author="hubot",
            head_ref=f"feature-{number}",
            pr_url=f"https://github.com/{REPO}/pull/{number}",
            pr_state=state,
        )
        assert row.id is not None
        return row.id


async def _commit_releases(sessions, sha: str = SHA) -> list[int]:
    async with sessions() as session:
        result = await session.execute(
            sa.select(Release.id)
            .where(Release.repository == REPO, Release.commit_sha == sha)
            .where(Release.pr_number.is_(None))
        )
        return list(result.scalars())


async def test_a_new_commit_gets_a_release_of_its_own_once(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        first = await _for_commit(session)
    assert first.id is not None and first.pr_number is None
    assert (first.title, first.author, first.head_ref, first.pr_state, first.pipeline) == (
        "Fix the thing",
        "octocat",
        "main",
        "open",
        "",
    )
    assert first.pr_url == f"https://github.com/{REPO}/commit/{SHA}"
    assert first.created_at.tzinfo is not None
    async with sessions.begin() as session:
        again = await _for_commit(session)
        other_commit = await _for_commit(session, sha="f" * 40)
        other_repo = await _for_commit(session, repository="acme/web")
    assert again.id == first.id
    assert len({first.id, other_commit.id, other_repo.id}) == 3
    assert await _commit_releases(sessions) == [first.id]


async def test_a_request_racing_an_uncommitted_one_gets_its_release(engine: AsyncEngine) -> None:
    """The reviewer's race: both look, find nothing, both insert. The second waits for the
    first to commit and then reads its row instead of adding a second release."""
    sessions = db.session_factory(engine)
    async with sessions.begin() as first:
        winner = await _for_commit(first)

        async def second() -> int | None:
            async with sessions.begin() as session:
                return (await _for_commit(session)).id

        loser = asyncio.create_task(second())
        await asyncio.sleep(0.5)
        # It cannot finish before the first commits: PostgreSQL holds its insert on the
        # conflicting row, SQLite its BEGIN IMMEDIATE on the write lock.
        assert not loser.done()
    assert await asyncio.wait_for(loser, timeout=10) == winner.id
    assert await _commit_releases(sessions) == [winner.id]


async def test_concurrent_requests_for_a_new_commit_share_one_release(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)

    async def deploy() -> int | None:
        async with sessions.begin() as session:
            return (await _for_commit(session)).id

    ids = await asyncio.gather(*(deploy() for _ in range(6)))
    assert len(set(ids)) == 1
    assert await _commit_releases(sessions) == [ids[0]]


async def test_a_rolled_back_winner_leaves_the_insert_to_the_other(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    async with sessions() as first:
        await first.begin()
        await _for_commit(first)

        async def second() -> int | None:
            async with sessions.begin() as session:
                return (await _for_commit(session)).id

        task = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        await first.rollback()
    kept = await asyncio.wait_for(task, timeout=10)
    assert await _commit_releases(sessions) == [kept]


async def test_the_open_pull_request_whose_head_it_is_carries_the_commit(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    pr = await _pull_request(sessions, 12)
    async with sessions.begin() as session:
        found = await _for_commit(session)
    assert (found.id, found.pr_number) == (pr, 12)
    assert await _commit_releases(sessions) == []

    # Even when the commit already had a release of its own, the pull request's thread wins.
    other = "a" * 40
    async with sessions.begin() as session:
        own = await _for_commit(session, sha=other)
    later_pr = await _pull_request(sessions, 13, sha=other)
    async with sessions.begin() as session:
        found = await _for_commit(session, sha=other)
    assert found.id == later_pr != own.id


async def test_a_closed_pull_request_is_not_reused(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    closed = await _pull_request(sessions, 7, state="closed")
    async with sessions.begin() as session:
        first = await _for_commit(session)
    assert first.id != closed and first.pr_number is None
    async with sessions.begin() as session:
        again = await _for_commit(session)
    assert again.id == first.id
    assert await _commit_releases(sessions) == [first.id]


async def test_pull_requests_may_share_a_head_with_the_commit_release(
    engine: AsyncEngine,
) -> None:
    """The index covers only releases without a pull request."""
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        own = await _for_commit(session)
    first = await _pull_request(sessions, 1, state="closed")
    second = await _pull_request(sessions, 2, state="closed")
    assert len({own.id, first, second}) == 3
    async with sessions.begin() as session:
        session.add(Release(repository=REPO, commit_sha=SHA))
        with pytest.raises(IntegrityError):
            await session.flush()


# --- the migration ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """An engine on a database with no schema at all, of each kind."""
    if request.param == "sqlite":
        engine = db.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield engine
        await engine.dispose()
        return
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        pytest.skip("TEST_DATABASE_URL is not set (make test sets it)")
    name = f"deploybot_mig_{uuid.uuid4().hex[:10]}"
    admin = db.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        engine = db.create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()
            async with admin.connect() as connection:
                await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def test_upgrade_merges_duplicate_commit_releases_into_the_oldest(
    empty_engine: AsyncEngine,
) -> None:
    await db.migrate(empty_engine, "0003")
    sessions = db.session_factory(empty_engine)
    async with sessions.begin() as session:
        oldest = Release(repository=REPO, commit_sha=SHA)
        threaded = Release(repository=REPO, commit_sha=SHA, thread_channel="C1", thread_ts="1.5")
        third = Release(repository=REPO, commit_sha=SHA, thread_channel="C1", thread_ts="2.5")
        pr = Release(repository=REPO, commit_sha=SHA, pr_number=7, pr_state="closed")
        elsewhere = Release(repository=REPO, commit_sha="b" * 40)
        session.add_all([oldest, threaded, third, pr, elsewhere])
        await session.flush()
        for index, release in enumerate([oldest, threaded, third, pr, elsewhere, threaded]):
            assert release.id is not None
            # The table as it stood at 0003: later columns do not exist yet.
            await session.execute(
                sa.insert(_ROLLOUT_AT_0003).values(
                    release_id=release.id,
                    repository=REPO,
                    environment=f"env{index}",
                    commit_sha=release.commit_sha,
                    kind="deploy",
                    status="success",
                    requested_via="github",
                    failure_streak=0,
                    version=0,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
        oldest_id, pr_id, elsewhere_id = oldest.id, pr.id, elsewhere.id

    await db.migrate(empty_engine)

    async with sessions() as session:
        left = {
            row.id: row
            for row in (await session.execute(sa.select(Release).order_by(Release.id))).scalars()
        }
        owners = (
            await session.execute(sa.select(Rollout.release_id).order_by(Rollout.id))
        ).scalars()
        assert list(owners) == [oldest_id] * 3 + [pr_id, elsewhere_id, oldest_id]
    assert set(left) == {oldest_id, pr_id, elsewhere_id}
    kept = left[oldest_id]
    # The oldest had no thread: it takes the first duplicate's, which its people know.
    assert (kept.thread_channel, kept.thread_ts) == ("C1", "1.5")
    async with sessions.begin() as session:
        assert (await _for_commit(session)).id == oldest_id
    async with empty_engine.connect() as connection:
        version = await connection.exec_driver_sql("SELECT version_num FROM alembic_version")
        assert version.scalar_one() == HEAD


async def test_upgrade_keeps_the_oldest_thread_when_it_has_one(empty_engine: AsyncEngine) -> None:
    await db.migrate(empty_engine, "0003")
    sessions = db.session_factory(empty_engine)
    async with sessions.begin() as session:
        session.add(Release(repository=REPO, commit_sha=SHA, thread_channel="C0", thread_ts="1.0"))
        await session.flush()
        session.add(Release(repository=REPO, commit_sha=SHA, thread_channel="C1", thread_ts="2.0"))
    await db.migrate(empty_engine)
    async with sessions() as session:
        rows = (await session.execute(sa.select(Release))).scalars().all()
    assert [(r.thread_channel, r.thread_ts) for r in rows] == [("C0", "1.0")]
