"""Releases (PR threads) and rollouts: rows in, pipeline values out, outcomes saved.

The pipeline core decides with plain values (`bot.pipeline.models`); these functions load
those values from the tables and write a decision's rollouts and effects back in the
caller's transaction, so state and effects commit together.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline import queue
from bot.pipeline.effects import Effect
from bot.pipeline.machine import Outcome, Release
from bot.pipeline.models import Decision, EnvironmentHistory, Kind, Person, Rollout, Status
from storage import db, leases, locks, outbox
from storage.models import (
    ACTIVE_STATUSES,
    Approval,
    utcnow,
)
from storage.models import (
    Release as ReleaseRow,
)
from storage.models import (
    Rollout as RolloutRow,
)

# --- releases --------------------------------------------------------------------------


async def upsert_pull_request(
    session: AsyncSession,
    *,
    repository: str,
    pr_number: int,
    head_sha: str,
    title: str,
    author: str,
    head_ref: str | None,
    pr_url: str | None,
    pr_state: str,
) -> tuple[ReleaseRow, bool]:
    """The release of a pull request, created or brought up to date; True when it changed."""
    row = await release_for_pr(session, repository=repository, pr_number=pr_number)
    if row is None:
        row = ReleaseRow(repository=repository, pr_number=pr_number, commit_sha=head_sha)
        session.add(row)
    before = (row.commit_sha, row.title, row.pr_state, row.head_ref, row.author, row.pr_url)
    row.commit_sha, row.title, row.pr_state = head_sha, title, pr_state
    row.head_ref, row.author, row.pr_url = head_ref, author, pr_url
    changed = row.id is None or before != (head_sha, title, pr_state, head_ref, author, pr_url)
    if changed:
        row.updated_at = utcnow()
    await session.flush()
    return row, changed


async def release_for_pr(
    session: AsyncSession, *, repository: str, pr_number: int
) -> ReleaseRow | None:
    result = await session.execute(
        sa.select(ReleaseRow).where(
            ReleaseRow.repository == repository, ReleaseRow.pr_number == pr_number
        )
    )
    return result.scalar_one_or_none()


async def release_for_commit(
    session: AsyncSession,
    *,
    repository: str,
    commit_sha: str,
    title: str,
    author: str,
    head_ref: str | None,
    commit_url: str | None,
) -> ReleaseRow:
    """The release that carries a commit deployed by name (`/deploy acme/api@main to stage`):
    the open pull request whose head it is, else the commit's own release (created once).

    Two requests for a new commit may race: `ux_release_commit` keeps one commit release,
    the loser's insert does nothing (on PostgreSQL it waits for the winner to commit) and
    both read the winner's row."""
    found = (
        await session.execute(
            sa.select(ReleaseRow)
            .where(ReleaseRow.repository == repository, ReleaseRow.commit_sha == commit_sha)
            .where(sa.or_(ReleaseRow.pr_number.is_(None), ReleaseRow.pr_state == "open"))
            # The pull request's thread first: that is where its people look.
            .order_by(ReleaseRow.pr_number.is_(None), ReleaseRow.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if found is not None:
        return found
    now = utcnow()
    await session.execute(
        db.insert(session, ReleaseRow)
        .values(
            repository=repository,
            commit_sha=commit_sha,
            pr_number=None,
            title=title,
            author=author,
            head_ref=head_ref,
            pr_url=commit_url,
            pr_state="open",
            pipeline="",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["repository", "commit_sha"],
            index_where=ReleaseRow.pr_number.is_(None),
        )
    )
    return (
        await session.execute(
            sa.select(ReleaseRow).where(
                ReleaseRow.repository == repository,
                ReleaseRow.commit_sha == commit_sha,
                ReleaseRow.pr_number.is_(None),
            )
        )
    ).scalar_one()


async def get_release(session: AsyncSession, *, release_id: int) -> ReleaseRow | None:
    return await session.get(ReleaseRow, release_id)


def release_value(row: ReleaseRow) -> Release:
    assert row.id is not None
    return Release(
        id=row.id, repository=row.repository, commit_sha=row.commit_sha, pr_number=row.pr_number
    )


async def set_thread(session: AsyncSession, *, release_id: int, channel: str, ts: str) -> str:
    """Record the thread's parent message, unless another sender recorded one first; returns
    the thread that counts."""
    await session.execute(
        sa.update(ReleaseRow)
        .where(ReleaseRow.id == release_id, ReleaseRow.thread_ts.is_(None))
        .values(thread_channel=channel, thread_ts=ts)
    )
    result = await session.execute(
        sa.select(ReleaseRow.thread_ts).where(ReleaseRow.id == release_id)
    )
    return str(result.scalar_one())


# --- rollouts: rows <-> values -----------------------------------------------------------


def _person(github: str | None, slack: str | None) -> Person:
    return Person(github=github, slack=slack)


def _identity(person: Person) -> str:
    return f"github:{person.github.lower()}" if person.github else f"slack:{person.slack}"


async def _decisions(
    session: AsyncSession, rollout_ids: Iterable[int]
) -> dict[int, list[Decision]]:
    ids = list(rollout_ids)
    found: dict[int, list[Decision]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = await session.execute(
        sa.select(Approval).where(Approval.rollout_id.in_(ids)).order_by(Approval.id)
    )
    for row in rows.scalars():
        found[row.rollout_id].append(
            Decision(
                person=_person(row.approver_github, row.approver_slack),
                approve=row.approve,
                commit_sha=row.commit_sha,
                at=row.created_at,
                reason=row.reason,
            )
        )
    return found


def _value(row: RolloutRow, decisions: list[Decision]) -> Rollout:
    assert row.id is not None
    return Rollout(
        id=row.id,
        repository=row.repository,
        environment=row.environment,
        commit_sha=row.commit_sha,
        status=Status(row.status),
        requested_by=_person(row.requested_by_github, row.requested_by_slack),
        created_at=row.created_at,
        kind=Kind(row.kind),
        deployment_id=row.github_deployment_id,
        decisions=tuple(decisions),
        failure_streak=row.failure_streak,
        healthy_since=row.healthy_since,
        next_check_at=row.next_check_at,
        replaces=row.replaces,
        note=row.note,
        step=row.canary_step,
        weight=row.canary_weight,
        paused_at=row.paused_at,
        held_at=row.held_at,
        forced=row.forced,
        wait_checks=row.wait_checks,
        gate_run_id=row.gate_run_id,
    )


async def values(session: AsyncSession, rows: Iterable[RolloutRow]) -> list[Rollout]:
    """Pipeline values for rollout rows, with their decisions (one query for all)."""
    rows = list(rows)
    decisions = await _decisions(session, (r.id for r in rows if r.id is not None))
    return [_value(row, decisions[row.id or 0]) for row in rows]


async def get_rollout(
    session: AsyncSession, *, rollout_id: int, for_update: bool = False
) -> tuple[RolloutRow, Rollout] | None:
    """A rollout; `for_update` locks its row (PostgreSQL) so concurrent decisions serialize."""
    statement = sa.select(RolloutRow).where(RolloutRow.id == rollout_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        return None
    (value,) = await values(session, [row])
    return row, value


async def rollout_for_deployment(
    session: AsyncSession, *, deployment_id: int
) -> tuple[RolloutRow, Rollout] | None:
    """The rollout whose GitHub deployment this is; None for deployments we did not create."""
    row = (
        await session.execute(
            sa.select(RolloutRow)
            .where(RolloutRow.github_deployment_id == deployment_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    (value,) = await values(session, [row])
    return row, value


async def rollouts_of_release(session: AsyncSession, *, release_id: int) -> list[Rollout]:
    rows = await session.execute(
        sa.select(RolloutRow).where(RolloutRow.release_id == release_id).order_by(RolloutRow.id)
    )
    return await values(session, rows.scalars())


async def reserve_rollout_id(session: AsyncSession) -> int:
    """The id the next new rollout of this transaction will get (the core names it first)."""
    if session.bind.dialect.name == "postgresql":
        result = await session.execute(
            sa.text("SELECT nextval(pg_get_serial_sequence('rollout', 'id'))")
        )
        return int(result.scalar_one())
    # SQLite: writers are serialised (BEGIN IMMEDIATE), so max + 1 is ours until we commit.
    result = await session.execute(sa.select(sa.func.coalesce(sa.func.max(RolloutRow.id), 0) + 1))
    return int(result.scalar_one())


async def environment_history(
    session: AsyncSession,
    *,
    repository: str,
    environment: str,
    now: datetime | None = None,
    before: int | None = None,
) -> EnvironmentHistory:
    """What holds the environment now, its lock, and how many ready requests wait in its
    queue (all of them, or those queued before rollout `before`)."""
    active_row = (
        await session.execute(
            sa.select(RolloutRow).where(
                RolloutRow.repository == repository,
                RolloutRow.environment == environment,
                RolloutRow.status.in_(ACTIVE_STATUSES),
            )
        )
    ).scalar_one_or_none()
    active = (await values(session, [active_row]))[0] if active_row is not None else None
    lock = await locks.get(session, repository=repository, environment=environment)
    if lock is not None and not lock.held_at(now or utcnow()):
        lock = None  # an expired lock holds nothing
    history = EnvironmentHistory(
        active=active,
        lock_holder=lock.holder if lock else None,
        lock_reason=lock.reason if lock else None,
    )
    waiting = await session.execute(
        sa.select(RolloutRow).where(
            RolloutRow.repository == repository,
            RolloutRow.environment == environment,
            RolloutRow.status == Status.QUEUED.value,
            RolloutRow.wait_checks.is_(False),
            RolloutRow.id < before if before is not None else sa.true(),
        )
    )
    # Requests waiting for someone else's lock are not ready; the lock's holder goes first.
    ready = [row for row in waiting.scalars() if queue.ready(_value(row, []), history)]
    return replace(history, waiting=len(ready))


async def active_rollout_id(
    session: AsyncSession, *, repository: str, environment: str
) -> int | None:
    """The rollout holding an environment (named in any case), if any."""
    result = await session.execute(
        sa.select(RolloutRow.id).where(
            RolloutRow.repository == repository,
            sa.func.lower(RolloutRow.environment) == environment.lower(),
            RolloutRow.status.in_(ACTIVE_STATUSES),
        )
    )
    return result.scalar_one_or_none()


async def succeeded_environments(
    session: AsyncSession, *, repository: str, commit_sha: str
) -> frozenset[str]:
    """Environments where this commit has succeeded (and still counts as good there)."""
    result = await session.execute(
        sa.select(RolloutRow.environment).where(
            RolloutRow.repository == repository,
            RolloutRow.commit_sha == commit_sha,
            RolloutRow.status.in_([Status.SUCCESS.value]),
        )
    )
    return frozenset(result.scalars())


# --- saving decisions ------------------------------------------------------------------


async def save_outcome(session: AsyncSession, *, release_id: int, outcome: Outcome) -> None:
    """Write a decision: its rollouts (new or changed) and its effects, in this transaction."""
    for rollout in outcome.rollouts:
        await _save_rollout(session, release_id=release_id, rollout=rollout)
    for effect in outcome.effects:
        await enqueue(session, effect)


async def enqueue(session: AsyncSession, effect: Effect) -> bool:
    """Write an effect to the outbox once; False when its key was written before."""
    return await outbox.enqueue(
        session,
        kind=type(effect).__name__,
        payload=_payload(asdict(effect)),
        idempotency_key=effect.key,
    )


def _payload(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_payload(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def _save_rollout(session: AsyncSession, *, release_id: int, rollout: Rollout) -> None:
    row = await session.get(RolloutRow, rollout.id)
    if row is None:
        row = RolloutRow(
            id=rollout.id,
            release_id=release_id,
            repository=rollout.repository,
            environment=rollout.environment,
            commit_sha=rollout.commit_sha,
            kind=rollout.kind.value,
            requested_by_github=rollout.requested_by.github,
            requested_by_slack=rollout.requested_by.slack,
            replaces=rollout.replaces,
            created_at=rollout.created_at,
        )
        session.add(row)
    row.status = rollout.status.value
    row.github_deployment_id = rollout.deployment_id
    row.failure_streak = rollout.failure_streak
    row.healthy_since = rollout.healthy_since
    row.next_check_at = rollout.next_check_at
    row.note = rollout.note
    row.canary_step = rollout.step
    row.canary_weight = rollout.weight
    row.paused_at = rollout.paused_at
    row.held_at = rollout.held_at
    row.forced = rollout.forced
    row.wait_checks = rollout.wait_checks
    row.gate_run_id = rollout.gate_run_id
    row.version += 1
    row.updated_at = utcnow()
    await session.flush()
    stored = (await _decisions(session, [rollout.id]))[rollout.id]
    known = {(d.person, d.commit_sha, d.approve) for d in stored}
    for decision in rollout.decisions:
        if (decision.person, decision.commit_sha, decision.approve) in known:
            continue
        session.add(
            Approval(
                rollout_id=rollout.id,
                approver=_identity(decision.person),
                approver_github=decision.person.github,
                approver_slack=decision.person.slack,
                approve=decision.approve,
                commit_sha=decision.commit_sha,
                reason=decision.reason,
                created_at=decision.at,
            )
        )
    await session.flush()


# --- the scheduler's share -------------------------------------------------------------


async def queued(session: AsyncSession, *, now: datetime, limit: int) -> list[RolloutRow]:
    """Queued requests due a look, oldest first, in environments nothing holds now (a busy
    one's would only fill the batch). Each waits until `next_check_at`, set while it waits
    for checks, for a lock or for GitHub to answer."""
    holder = sa.orm.aliased(RolloutRow)
    busy = (
        sa.select(holder.id)
        .where(
            holder.repository == RolloutRow.repository,
            holder.environment == RolloutRow.environment,
            holder.status.in_(ACTIVE_STATUSES),
        )
        .exists()
    )
    rows = await session.execute(
        sa.select(RolloutRow)
        .where(
            RolloutRow.status == Status.QUEUED.value,
            sa.or_(RolloutRow.next_check_at.is_(None), RolloutRow.next_check_at <= now),
            ~busy,
        )
        .order_by(RolloutRow.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def wake_queue(
    session: AsyncSession,
    *,
    repository: str,
    environment: str | None = None,
    commit_sha: str | None = None,
) -> None:
    """Look at a repository's queued requests at the next tick instead of after their
    wait: an environment's (its lock was released), or a commit's (one of its checks has
    just finished)."""
    where = [
        sa.func.lower(RolloutRow.repository) == repository.lower(),
        RolloutRow.status == Status.QUEUED.value,
    ]
    if environment is not None:
        where.append(sa.func.lower(RolloutRow.environment) == environment.lower())
    if commit_sha is not None:
        where.append(RolloutRow.commit_sha == commit_sha)
    await session.execute(sa.update(RolloutRow).where(*where).values(next_check_at=None))


async def succeeded_since(
    session: AsyncSession, *, repository: str, environment: str, since: datetime
) -> str | None:
    """The commit of the newest deploy that succeeded in the environment after `since`."""
    result = await session.execute(
        sa.select(RolloutRow.commit_sha)
        .where(
            RolloutRow.repository == repository,
            RolloutRow.environment == environment,
            RolloutRow.kind == Kind.DEPLOY.value,
            RolloutRow.status == Status.SUCCESS.value,
            RolloutRow.updated_at > since,
        )
        .order_by(RolloutRow.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def claim_due_probes(
    session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> Sequence[sa.Row[Any]]:
    """Lease verifying rollouts whose next health check is due, until `now + lease`: plain
    rows of the rollout table, since a tick may claim thousands."""
    return await leases.claim_rows(
        session,
        table=RolloutRow,
        due=sa.and_(RolloutRow.status == Status.VERIFYING.value, RolloutRow.next_check_at <= now),
        order_by=[RolloutRow.next_check_at, RolloutRow.id],
        owner=owner,
        now=now,
        lease=lease,
        limit=limit,
    )


async def claimed_releases(
    session: AsyncSession, *, owner: str, until: datetime
) -> dict[int, sa.Row[Any]]:
    """By id, the releases of the rollouts one claim leased to `owner` until `until`, with
    what a probe needs of them: the pipeline file, the commit, the pull request."""
    claimed = sa.select(RolloutRow.release_id).where(
        RolloutRow.lease_owner == owner, RolloutRow.lease_until == until
    )
    rows = await session.execute(
        sa.select(
            ReleaseRow.id,
            ReleaseRow.repository,
            ReleaseRow.commit_sha,
            ReleaseRow.pr_number,
            ReleaseRow.pipeline,
        ).where(ReleaseRow.id.in_(claimed))
    )
    return {row.id: row for row in rows}


def probe_value(row: Any) -> Rollout:
    """The pipeline value of a claimed rollout row (`claim_due_probes`), without its
    decisions: a probe's outcome does not depend on them, and they are not saved with it."""
    return _value(row, [])


PROBE_PROGRESS = ("failure_streak", "healthy_since", "next_check_at", "held_at")
_progress = operator.attrgetter(*PROBE_PROGRESS)


def probe_progress(row: Any, after: Rollout, *, now: datetime) -> dict[str, Any]:
    """What `save_probe_progress` writes for a probe that only kept its rollout verifying:
    `row` as claimed, `after` the rollout as the probe left it, of which only
    `PROBE_PROGRESS` (the timers and the failure streak) may differ. Plain values only, so
    thousands of them cost the garbage collector nothing to keep until they are saved."""
    changed = _progress(after) != _progress(row)
    return {
        leases.ROW_ID: row.id,
        "row_version": row.version,
        "version": row.version + changed,
        "failure_streak": after.failure_streak,
        "healthy_since": after.healthy_since,
        "next_check_at": after.next_check_at,
        "held_at": after.held_at,
        "updated_at": now if changed else row.updated_at,
    }


async def save_probe_progress(
    session: AsyncSession, *, owner: str, progress: Sequence[Mapping[str, Any]]
) -> None:
    """Save probes that only kept their rollouts verifying (`probe_progress`), in one
    statement, and drop their leases. A rollout that another replica took over, or that
    changed since it was claimed (its `version` moved: a pause, a status, a promotion), is
    not written and stays leased: see `held_probes`."""
    await leases.release_many(
        session, table=RolloutRow, owner=owner, rows=progress, guard="version"
    )


async def held_probes(session: AsyncSession, *, owner: str, until: datetime) -> set[int]:
    """The rollouts of a claim (`claim_due_probes`) that `owner` still holds."""
    return await leases.held(session, table=RolloutRow, owner=owner, until=until)


async def unclaim_probes(session: AsyncSession, *, owner: str, rollout_ids: Iterable[int]) -> None:
    """Give claimed rollouts back unprobed, due as they were (one statement)."""
    rows = [{leases.ROW_ID: rollout_id} for rollout_id in rollout_ids]
    await leases.release_many(session, table=RolloutRow, owner=owner, rows=rows)


async def record_deployment(
    session: AsyncSession, *, rollout_id: int, deployment_id: int, step: int | None = None
) -> None:
    """The GitHub deployment created for a rollout (found again by its id in statuses).
    Only while the rollout has none and is at that canary `step`: a late retry of an
    earlier step's deployment must not take the place of the current step's."""
    await session.execute(
        sa.update(RolloutRow)
        .where(
            RolloutRow.id == rollout_id,
            RolloutRow.github_deployment_id.is_(None),
            RolloutRow.canary_step.is_(None) if step is None else RolloutRow.canary_step == step,
        )
        .values(github_deployment_id=deployment_id, updated_at=utcnow())
    )


async def current_in_environment(
    session: AsyncSession, *, repository: str, environment: str
) -> tuple[RolloutRow, Rollout] | None:
    """What holds or last succeeded in an environment: the rollout a rollback would undo."""
    row = (
        await session.execute(
            sa.select(RolloutRow)
            .where(
                RolloutRow.repository == repository,
                sa.func.lower(RolloutRow.environment) == environment.lower(),
                RolloutRow.status.in_(
                    [*ACTIVE_STATUSES, Status.SUCCESS.value, Status.FAILURE.value]
                ),
            )
            .order_by(RolloutRow.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    (value,) = await values(session, [row])
    return row, value


async def previous_good_sha(
    session: AsyncSession, *, repository: str, environment: str, other_than: str
) -> str | None:
    """The newest commit other than `other_than` that succeeded in the environment."""
    result = await session.execute(
        sa.select(RolloutRow.commit_sha)
        .where(
            RolloutRow.repository == repository,
            sa.func.lower(RolloutRow.environment) == environment.lower(),
            RolloutRow.status == Status.SUCCESS.value,
            RolloutRow.commit_sha != other_than,
        )
        .order_by(RolloutRow.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def good_commits(
    session: AsyncSession, *, repository: str, environment: str, other_than: str, limit: int
) -> list[Rollout]:
    """The newest successful rollout of each commit (other than `other_than`) in the
    environment, newest first: what a rollback may go back to."""
    rows = await session.execute(
        sa.select(RolloutRow)
        .where(
            RolloutRow.repository == repository,
            sa.func.lower(RolloutRow.environment) == environment.lower(),
            RolloutRow.status == Status.SUCCESS.value,
            RolloutRow.commit_sha != other_than,
        )
        .order_by(RolloutRow.id.desc())
        .limit(limit * 4)  # the same commit may have succeeded there several times
    )
    newest: dict[str, RolloutRow] = {}
    for row in rows.scalars():
        newest.setdefault(row.commit_sha, row)
    return await values(session, list(newest.values())[:limit])


async def postpone_check(session: AsyncSession, *, rollout_id: int, until: datetime) -> None:
    """Look at a verifying rollout again no sooner than `until`."""
    await session.execute(
        sa.update(RolloutRow).where(RolloutRow.id == rollout_id).values(next_check_at=until)
    )
