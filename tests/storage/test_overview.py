"""A repository at a glance: environments in pipeline order, locks, approvals, query count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.pipeline.models import Kind, Person, Status
from storage import db
from storage.models import Approval, ChannelSubscription, Lock, Release, Rollout
from storage.overview import environments_of, subscribed_repositories

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)
PIPELINE = """\
environments:
  - name: dev
  - name: stage
  - name: production
    approvals: 2
    approvers: [bob, carol, dave]
"""


class Rows:
    """Builds rows for one repository, with ids and times that grow."""

    def __init__(self, session: AsyncSession, repository: str = "acme/api") -> None:
        self.session = session
        self.repository = repository
        self.tick = 0

    def _at(self) -> datetime:
        self.tick += 1
        return T0 + timedelta(minutes=self.tick)

    async def release(self, number: int | None = 12, **fields: Any) -> Release:
        row = Release(
            repository=self.repository,
            pr_number=number,
            commit_sha=fields.pop("commit_sha", "a" * 40),
            pr_url=f"https://github.com/{self.repository}/pull/{number}" if number else None,
            title=fields.pop("title", f"PR {number}"),
            pipeline=fields.pop("pipeline", PIPELINE),
            **fields,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def rollout(
        self, release: Release, environment: str, status: Status, **fields: Any
    ) -> Rollout:
        at = self._at()
        assert release.id is not None
        row = Rollout(
            release_id=release.id,
            repository=self.repository,
            environment=environment,
            commit_sha=fields.pop("commit_sha", release.commit_sha),
            status=status.value,
            created_at=at,
            updated_at=at,
            **fields,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def approval(
        self,
        rollout: Rollout,
        login: str,
        *,
        slack: str | None = None,
        commit_sha: str | None = None,
    ) -> None:
        assert rollout.id is not None
        self.session.add(
            Approval(
                rollout_id=rollout.id,
                approver=f"slack:{slack}" if slack else f"github:{login.lower()}",
                approver_github=login,
                approver_slack=slack,
                commit_sha=commit_sha or rollout.commit_sha,
                created_at=self._at(),
            )
        )
        await self.session.flush()

    async def lock(self, environment: str, **fields: Any) -> None:
        self.session.add(Lock(repository=self.repository, environment=environment, **fields))
        await self.session.flush()


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


def sessions_of(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return db.session_factory(engine)


async def test_environments_in_pipeline_order_with_locks_and_approvals(
    engine: AsyncEngine,
) -> None:
    sessions = sessions_of(engine)
    async with sessions.begin() as session:
        rows = Rows(session)
        old = await rows.release(11, commit_sha="b" * 40, thread_channel="C1", thread_ts="1.2")
        pr = await rows.release(12, thread_channel="C1", thread_ts="1714566600.000100")
        await rows.rollout(old, "stage", Status.FAILURE, commit_sha="b" * 40)
        await rows.rollout(
            pr, "stage", Status.SUCCESS, requested_by_github="alice", github_deployment_id=9
        )
        await rows.rollout(old, "production", Status.SUCCESS, commit_sha="b" * 40)
        waiting = await rows.rollout(
            pr, "production", Status.AWAITING_APPROVAL, requested_by_slack="U0ALICE"
        )
        await rows.approval(waiting, "bob")
        await rows.approval(waiting, "Bob", slack="U0BOB")  # a person counts once
        await rows.approval(waiting, "carol", commit_sha="c" * 40)  # for another commit
        await rows.rollout(pr, "legacy", Status.IN_PROGRESS)
        await rows.rollout(pr, "dev", Status.CANCELLED)  # nothing ran there
        await rows.rollout(old, "Legacy", Status.ROLLED_BACK, commit_sha="b" * 40)
        await rows.lock("Production", holder_github="dave", reason="db migration", created_at=T0)
        await rows.lock("stage", holder_slack="U0EVE", expires_at=NOW - timedelta(seconds=1))
        await rows.lock("dev", holder_slack="U0EVE", expires_at=NOW + timedelta(hours=1))

    async with sessions() as session:
        overview = await environments_of(session, repository="acme/api", now=NOW)

    assert overview.repository == "acme/api"
    assert overview.pipeline_error is None
    assert overview.pipeline_names == ("dev", "stage", "production")
    dev, stage, production, legacy = overview.environments
    assert [e.name for e in overview.environments] == ["dev", "stage", "production", "Legacy"]
    assert overview.next_environment("STAGE") == "production"
    assert overview.next_environment("production") is None
    assert overview.next_environment("Legacy") is None

    assert dev.current is None
    assert dev.lock is not None
    assert (dev.lock.holder, dev.lock.reason) == (Person(slack="U0EVE"), None)

    assert stage.active is None
    assert stage.current is stage.last
    assert stage.current is not None
    assert (stage.current.status, stage.current.commit_sha) == (Status.SUCCESS, "a" * 40)
    assert stage.current.requested_by == Person(github="alice")
    assert stage.current.deployment_id == 9
    assert stage.current.updated_at == T0 + timedelta(minutes=2)
    assert stage.current.release.id == pr.id
    assert (stage.current.release.pr_number, stage.current.release.title) == (12, "PR 12")
    assert stage.current.release.pr_url == "https://github.com/acme/api/pull/12"
    assert stage.current.release.thread_channel == "C1"
    assert stage.current.release.thread_ts == "1714566600.000100"
    assert stage.lock is None  # expired
    assert stage.pending is None

    assert production.active is not None
    assert production.current is production.active
    assert production.active.status is Status.AWAITING_APPROVAL
    assert production.active.requested_by == Person(slack="U0ALICE")
    assert production.last is not None
    assert (production.last.status, production.last.commit_sha) == (Status.SUCCESS, "b" * 40)
    assert production.last.release.id == old.id
    assert production.pending is not None
    assert production.pending.rollout_id == waiting.id
    assert production.pending.release_id == pr.id
    assert production.pending.approved_by == (Person(github="bob"),)
    assert (production.pending.given, production.pending.needed) == (1, 2)
    assert production.lock is not None
    assert production.lock.holder == Person(github="dave")
    assert (production.lock.reason, production.lock.since) == ("db migration", T0)
    assert production.lock.expires_at is None

    # Environments only the rows know come last; names differing in case are one environment.
    assert legacy.last is not None
    assert legacy.last.status is Status.ROLLED_BACK
    assert legacy.active is not None
    assert legacy.active.status is Status.IN_PROGRESS


async def test_a_rollback_that_finished_later_is_what_runs(engine: AsyncEngine) -> None:
    sessions = sessions_of(engine)
    async with sessions.begin() as session:
        rows = Rows(session)
        pr = await rows.release()
        failed = await rows.rollout(pr, "stage", Status.ROLLED_BACK)
        await rows.rollout(
            pr, "stage", Status.SUCCESS, commit_sha="b" * 40, kind="rollback", replaces=failed.id
        )
        await rows.rollout(pr, "stage", Status.REJECTED)
    async with sessions() as session:
        overview = await environments_of(session, repository="acme/api", now=NOW)
    stage = overview.environments[1]
    assert stage.current is not None
    assert stage.current.rollout.kind is Kind.ROLLBACK
    assert (stage.current.status, stage.current.commit_sha) == (Status.SUCCESS, "b" * 40)


async def test_an_invalid_pipeline_orders_environments_by_name(engine: AsyncEngine) -> None:
    sessions = sessions_of(engine)
    async with sessions.begin() as session:
        rows = Rows(session)
        good = await rows.release(11)
        broken = await rows.release(12, pipeline="environments:\n  - name: stage\n    bogus: 1\n")
        await rows.rollout(good, "stage", Status.SUCCESS)
        await rows.rollout(broken, "dev", Status.IN_PROGRESS)
        await rows.lock("qa", holder_github="bob")
    async with sessions() as session:
        overview = await environments_of(session, repository="acme/api")
    assert overview.pipeline_error is not None
    assert "bogus" in overview.pipeline_error
    assert overview.pipeline_names == ()
    assert [e.name for e in overview.environments] == ["dev", "qa", "stage"]
    assert overview.next_environment("dev") is None


async def test_pending_approval_of_an_environment_the_pipeline_lost(engine: AsyncEngine) -> None:
    sessions = sessions_of(engine)
    async with sessions.begin() as session:
        rows = Rows(session)
        pr = await rows.release()
        await rows.rollout(pr, "qa", Status.AWAITING_APPROVAL)
    async with sessions() as session:
        overview = await environments_of(session, repository="acme/api")
    qa = overview.environments[-1]
    assert qa.name == "qa"
    assert qa.pending is not None
    assert (qa.pending.given, qa.pending.needed) == (0, 1)  # as the core counts it


async def test_a_repository_without_releases_is_empty(engine: AsyncEngine) -> None:
    async with sessions_of(engine)() as session:
        overview = await environments_of(session, repository="acme/none")
    assert overview.environments == ()
    assert overview.pipeline_error is None


async def test_other_repositories_do_not_leak_in(engine: AsyncEngine) -> None:
    sessions = sessions_of(engine)
    async with sessions.begin() as session:
        mine, theirs = Rows(session, "acme/api"), Rows(session, "acme/web")
        await mine.rollout(await mine.release(), "dev", Status.SUCCESS)
        other = await theirs.release(pipeline="environments:\n  - name: zz\n")
        await theirs.rollout(other, "stage", Status.IN_PROGRESS)
        await theirs.lock("dev", holder_github="mallory")
    async with sessions() as session:
        overview = await environments_of(session, repository="acme/api")
    dev, stage, production = overview.environments
    assert dev.current is not None
    assert dev.lock is None
    assert stage.current is None
    assert production.current is None


async def test_queries_do_not_grow_with_environments(engine: AsyncEngine) -> None:
    async def count(repository: str, environments: int) -> int:
        names = [f"env-{i}" for i in range(environments)]
        pipeline = "environments:\n" + "".join(f"  - name: {n}\n" for n in names)
        async with sessions.begin() as session:
            rows = Rows(session, repository)
            pr = await rows.release(pipeline=pipeline)
            for name in names:
                await rows.rollout(pr, name, Status.SUCCESS)
                waiting = await rows.rollout(pr, name, Status.AWAITING_APPROVAL)
                await rows.approval(waiting, "bob")
                await rows.lock(name, holder_github="bob")
        async with sessions() as session:
            with counting(engine) as statements:
                overview = await environments_of(session, repository=repository)
        assert len(overview.environments) == environments
        assert all(e.pending is not None and e.pending.given == 1 for e in overview.environments)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        return len(selects)

    sessions = sessions_of(engine)
    assert await count("acme/small", 2) == await count("acme/large", 12) == 5


async def test_subscribed_repositories(engine: AsyncEngine) -> None:
    sessions = sessions_of(engine)
    async with sessions.begin() as session:
        for name in ("zeta/api", "acme/web"):
            session.add(ChannelSubscription(repository=name, channel_id="C1", created_by="U1"))
        await Rows(session, "acme/web").release(thread_channel="C1")  # subscribed and threaded
        await Rows(session, "acme/api").release(thread_channel="C2")
        moved = Rows(session, "acme/old")
        await moved.release(1, thread_channel="C3")
        await moved.release(2)  # the newest release has no channel any more
        await Rows(session, "acme/quiet").release()
    async with sessions() as session:
        assert await subscribed_repositories(session) == ["acme/api", "acme/web", "zeta/api"]


async def test_no_repositories(engine: AsyncEngine) -> None:
    async with sessions_of(engine)() as session:
        assert await subscribed_repositories(session) == []
