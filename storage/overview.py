"""A repository at a glance: each environment's rollout, lock and pending approval.

Read-only queries for the App Home tab and `/deploy status owner/repo`. Rows become plain
frozen values here (rollouts through `storage.releases.values`, so decisions load the same
way everywhere); callers never see ORM rows. The number of queries is fixed per repository,
however many environments it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.config import Pipeline, PipelineError, parse_pipeline
from bot.pipeline.models import Person, Rollout, Status
from storage.models import ACTIVE_STATUSES, ChannelSubscription, Lock, utcnow
from storage.models import Release as ReleaseRow
from storage.models import Rollout as RolloutRow
from storage.releases import values

# What ran (or tried to) in an environment, as opposed to what never got there.
FINISHED_STATUSES = (Status.SUCCESS.value, Status.FAILURE.value, Status.ROLLED_BACK.value)


@dataclass(frozen=True)
class ReleaseSummary:
    """The pull request (or pushed commit) a rollout belongs to, and its Slack thread."""

    id: int
    commit_sha: str  # the head now; a rollout keeps its own commit
    pr_number: int | None
    pr_url: str | None
    title: str
    thread_channel: str | None
    thread_ts: str | None


@dataclass(frozen=True)
class RolloutSummary:
    """A rollout with what the board needs around it: its release and when it last changed."""

    rollout: Rollout
    release: ReleaseSummary
    updated_at: datetime

    @property
    def status(self) -> Status:
        return self.rollout.status

    @property
    def commit_sha(self) -> str:
        return self.rollout.commit_sha

    @property
    def requested_by(self) -> Person:
        return self.rollout.requested_by

    @property
    def deployment_id(self) -> int | None:
        return self.rollout.deployment_id


@dataclass(frozen=True)
class LockSummary:
    """A lock still held on an environment."""

    holder: Person
    reason: str | None
    since: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class PendingApproval:
    """A rollout waiting for approval: who approved it so far, and how many it needs."""

    rollout_id: int
    release_id: int
    commit_sha: str
    requested_by: Person
    approved_by: tuple[Person, ...]
    needed: int

    @property
    def given(self) -> int:
        return len(self.approved_by)


@dataclass(frozen=True)
class EnvironmentOverview:
    """One environment: what holds it now, what last finished there, its lock and approval."""

    name: str
    active: RolloutSummary | None = None  # pending, awaiting approval, deploying or verifying
    last: RolloutSummary | None = None  # newest success, failure or rolled_back
    lock: LockSummary | None = None
    pending: PendingApproval | None = None

    @property
    def current(self) -> RolloutSummary | None:
        """The rollout under way there, else the one that last finished there."""
        return self.active or self.last


@dataclass(frozen=True)
class RepositoryOverview:
    """A repository's environments in promotion order.

    `pipeline_names` are the pipeline file's environments; `environments` lists them first,
    then any others that have rollouts or locks (renamed or removed ones), by name. When the
    file cannot be read, `pipeline_error` says why and every environment is one of those others.
    """

    repository: str
    environments: tuple[EnvironmentOverview, ...] = ()
    pipeline_error: str | None = None
    pipeline_names: tuple[str, ...] = ()
    pipeline: Pipeline | None = None

    def next_environment(self, name: str) -> str | None:
        """The pipeline environment after `name` (ignoring case), or None."""
        lowered = [n.lower() for n in self.pipeline_names]
        if name.lower() not in lowered:
            return None
        index = lowered.index(name.lower()) + 1
        return self.pipeline_names[index] if index < len(self.pipeline_names) else None


async def subscribed_repositories(session: AsyncSession) -> list[str]:
    """Repositories with a channel: subscribed with `/deploy subscribe`, or whose newest
    release has a thread channel (the pipeline file's `slack.channel`). Sorted, once each."""
    subscribed = await session.execute(sa.select(ChannelSubscription.repository))
    newest = sa.select(sa.func.max(ReleaseRow.id)).group_by(ReleaseRow.repository)
    threaded = await session.execute(
        sa.select(ReleaseRow.repository).where(
            ReleaseRow.id.in_(newest), ReleaseRow.thread_channel.is_not(None)
        )
    )
    return sorted({*subscribed.scalars(), *threaded.scalars()})


async def environments_of(
    session: AsyncSession, *, repository: str, now: datetime | None = None
) -> RepositoryOverview:
    """Every environment of `repository` in pipeline order (the newest release's pipeline
    file), then any others that have rollouts or locks. Five queries, whatever the count of
    environments; an invalid pipeline file is reported, never raised."""
    now = now or utcnow()
    pipeline_text = (
        await session.execute(
            sa.select(ReleaseRow.pipeline)
            .where(ReleaseRow.repository == repository)
            .order_by(ReleaseRow.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    pipeline: Pipeline | None = None
    error: str | None = None
    if pipeline_text is not None:
        try:
            pipeline = parse_pipeline(pipeline_text)
        except PipelineError as exc:
            error = str(exc)

    rows = await _current_rows(session, repository=repository)
    rollouts = await values(session, rows)
    releases = await _releases(session, {row.release_id for row in rows})
    locks = await _locks(session, repository=repository, now=now)

    names = [env.name for env in pipeline.environments] if pipeline is not None else []
    pipeline_names = tuple(names)
    canonical = {name.lower(): name for name in names}
    others = sorted(
        {r.environment for r in rollouts if r.environment.lower() not in canonical}
        | {lock.environment for lock in locks if lock.environment.lower() not in canonical},
        key=lambda name: (name.lower(), name),
    )
    for name in others:
        canonical.setdefault(name.lower(), name)

    active: dict[str, RolloutSummary] = {}
    last: dict[str, RolloutSummary] = {}
    for row, rollout in zip(rows, rollouts, strict=True):
        summary = RolloutSummary(rollout, releases[row.release_id], row.updated_at)
        key = rollout.environment.lower()
        target = active if rollout.status.active else last
        if key not in target or target[key].rollout.id < rollout.id:
            target[key] = summary
    held = {lock.environment.lower(): lock for lock in locks}

    environments = []
    for key, name in canonical.items():
        lock_row = held.get(key)
        now_active = active.get(key)
        environments.append(
            EnvironmentOverview(
                name=name,
                active=now_active,
                last=last.get(key),
                lock=_lock_value(lock_row) if lock_row is not None else None,
                pending=_pending(now_active, pipeline),
            )
        )
    return RepositoryOverview(
        repository=repository,
        environments=tuple(environments),
        pipeline_error=error,
        pipeline_names=pipeline_names,
        pipeline=pipeline,
    )


async def _current_rows(session: AsyncSession, *, repository: str) -> list[RolloutRow]:
    """The active rollouts of the repository and the newest finished one per environment."""
    newest_finished = (
        sa.select(sa.func.max(RolloutRow.id))
        .where(
            RolloutRow.repository == repository,
            RolloutRow.status.in_(FINISHED_STATUSES),
        )
        .group_by(sa.func.lower(RolloutRow.environment))
    )
    result = await session.execute(
        sa.select(RolloutRow)
        .where(
            RolloutRow.repository == repository,
            sa.or_(
                RolloutRow.status.in_(ACTIVE_STATUSES),
                RolloutRow.id.in_(newest_finished),
            ),
        )
        .order_by(RolloutRow.id)
    )
    return list(result.scalars())


async def _releases(session: AsyncSession, ids: set[int]) -> dict[int, ReleaseSummary]:
    if not ids:
        return {}
    # Named columns: the pipeline text (up to 256 KiB a row) is not needed here.
    result = await session.execute(
        sa.select(
            ReleaseRow.id,
            ReleaseRow.commit_sha,
            ReleaseRow.pr_number,
            ReleaseRow.pr_url,
            ReleaseRow.title,
            ReleaseRow.thread_channel,
            ReleaseRow.thread_ts,
        ).where(ReleaseRow.id.in_(sorted(ids)))
    )
    return {row.id: ReleaseSummary(*row) for row in result}


async def _locks(session: AsyncSession, *, repository: str, now: datetime) -> list[Lock]:
    """The repository's locks still held at `now` (an expired lock holds nothing)."""
    result = await session.execute(
        sa.select(Lock).where(
            Lock.repository == repository,
            sa.or_(Lock.expires_at.is_(None), Lock.expires_at > now),
        )
    )
    return list(result.scalars())


def _lock_value(row: Lock) -> LockSummary:
    return LockSummary(
        holder=Person(github=row.holder_github, slack=row.holder_slack),
        reason=row.reason,
        since=row.created_at,
        expires_at=row.expires_at,
    )


def _pending(active: RolloutSummary | None, pipeline: Pipeline | None) -> PendingApproval | None:
    if active is None or active.status is not Status.AWAITING_APPROVAL:
        return None
    rollout = active.rollout
    env = pipeline.environment(rollout.environment) if pipeline is not None else None
    return PendingApproval(
        rollout_id=rollout.id,
        release_id=active.release.id,
        commit_sha=rollout.commit_sha,
        requested_by=rollout.requested_by,
        approved_by=tuple(d.person for d in rollout.approvals()),
        # As the core counts them (`machine.decide`): an unknown environment needs one.
        needed=env.approvals if env is not None else 1,
    )
