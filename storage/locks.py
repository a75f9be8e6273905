"""Environment locks: rows in, `bot.pipeline.locks.Lock` values out.

The pure rules decide on a row read a moment ago; the writes here make the database decide
the race with whoever changed the row since. `put` never overwrites a lock someone else
still holds, and `delete` removes only the very lock that was decided on. Each says
whether it took effect, so the caller can read again instead of announcing a lock it does
not have (or deleting one taken meanwhile by someone else).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.locks import Lock
from bot.pipeline.models import Person
from storage import db
from storage.models import Lock as LockRow


def _value(row: LockRow) -> Lock:
    return Lock(
        environment=row.environment,
        holder=Person(github=row.holder_github, slack=row.holder_slack),
        since=row.created_at,
        expires_at=row.expires_at,
        reason=row.reason,
    )


def _held_by(person: Person) -> sa.ColumnElement[bool]:
    """The row's holder is `person`, as `Person.same_as` tells (GitHub logins ignore case)."""
    matches: list[sa.ColumnElement[bool]] = []
    if person.github:
        matches.append(sa.func.lower(LockRow.holder_github) == person.github.lower())
    if person.slack:
        matches.append(LockRow.holder_slack == person.slack)
    return sa.or_(*matches) if matches else sa.false()


def _expired_at(now: datetime) -> sa.ColumnElement[bool]:
    """The row's lock is no longer held at `now` (the negation of `Lock.held_at`)."""
    return sa.and_(LockRow.expires_at.is_not(None), LockRow.expires_at <= now)


async def get(session: AsyncSession, *, repository: str, environment: str) -> Lock | None:
    """The environment's lock, held or expired (the caller decides with `Lock.held_at`)."""
    row = (
        await session.execute(
            sa.select(LockRow).where(
                LockRow.repository == repository,
                sa.func.lower(LockRow.environment) == environment.lower(),
            )
        )
    ).scalar_one_or_none()
    return _value(row) if row is not None else None


async def put(session: AsyncSession, *, repository: str, lock: Lock, now: datetime) -> bool:
    """Take or renew the lock (one row per repository and environment), unless someone
    else holds it at `now`: the row is written when there is none, when it expired, or
    when it is the same holder's. Whether it was written."""
    values = {
        "holder_github": lock.holder.github,
        "holder_slack": lock.holder.slack,
        "reason": lock.reason,
        "created_at": lock.since,
        "expires_at": lock.expires_at,
    }
    written = await session.execute(
        db.insert(session, LockRow)
        .values(repository=repository, environment=lock.environment, **values)
        .on_conflict_do_update(
            index_elements=["repository", "environment"],
            set_=values,
            where=sa.or_(_expired_at(now), _held_by(lock.holder)),
        )
        .returning(LockRow.id)
    )
    return written.first() is not None


async def delete(session: AsyncSession, *, repository: str, lock: Lock) -> bool:
    """Remove `lock` if it is still the environment's lock: same holder, taken at the same
    moment (a renewal keeps it). Whether it was removed."""
    removed = await session.execute(
        sa.delete(LockRow)
        .where(
            LockRow.repository == repository,
            sa.func.lower(LockRow.environment) == lock.environment.lower(),
            LockRow.holder_github.is_not_distinct_from(lock.holder.github),
            LockRow.holder_slack.is_not_distinct_from(lock.holder.slack),
            LockRow.created_at == lock.since,
        )
        .returning(LockRow.id)
    )
    return removed.first() is not None


async def expiring_between(
    session: AsyncSession, *, start: datetime, end: datetime
) -> list[tuple[str, Lock]]:
    """Every repository's locks whose expiry falls in `[start, end]`, as `(repository, lock)`
    (one query): what the scheduler reminds of or announces (`locks.notices`)."""
    rows = (
        await session.execute(
            sa.select(LockRow)
            .where(
                LockRow.expires_at.is_not(None),
                LockRow.expires_at >= start,
                LockRow.expires_at <= end,
            )
            .order_by(LockRow.expires_at, LockRow.id)
        )
    ).scalars()
    return [(row.repository, _value(row)) for row in rows]
