"""Environment locks: rows in, `bot.pipeline.locks.Lock` values out."""

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


async def of_repository(session: AsyncSession, *, repository: str, now: datetime) -> list[Lock]:
    """The repository's locks that are still held."""
    rows = await session.execute(
        sa.select(LockRow)
        .where(
            LockRow.repository == repository,
            sa.or_(LockRow.expires_at.is_(None), LockRow.expires_at > now),
        )
        .order_by(LockRow.environment)
    )
    return [_value(row) for row in rows.scalars()]


async def put(session: AsyncSession, *, repository: str, lock: Lock) -> None:
    """Take or renew the lock (one row per repository and environment)."""
    values = {
        "holder_github": lock.holder.github,
        "holder_slack": lock.holder.slack,
        "reason": lock.reason,
        "created_at": lock.since,
        "expires_at": lock.expires_at,
    }
    await session.execute(
        db.insert(session, LockRow)
        .values(repository=repository, environment=lock.environment, **values)
        .on_conflict_do_update(index_elements=["repository", "environment"], set_=values)
    )


async def delete(session: AsyncSession, *, repository: str, environment: str) -> None:
    await session.execute(
        sa.delete(LockRow).where(
            LockRow.repository == repository,
            sa.func.lower(LockRow.environment) == environment.lower(),
        )
    )
