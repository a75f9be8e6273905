"""Repository freezes: rows in, `bot.pipeline.freezes.Freeze` values out.

One row per repository. `active` returns only a freeze that still holds at `now`, so an
ended freeze holds nothing even before anyone removes its row; `put` replaces whatever row
was there (setting a freeze is for admins, and the newest word wins).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.freezes import Freeze
from bot.pipeline.models import Person
from storage import db
from storage.models import Freeze as FreezeRow


def _value(row: FreezeRow) -> Freeze:
    return Freeze(
        repository=row.repository,
        by=Person(github=row.by_github, slack=row.by_slack),
        reason=row.reason,
        until=row.until,
        since=row.created_at,
    )


async def active(session: AsyncSession, *, repository: str, now: datetime) -> Freeze | None:
    """The repository's freeze if it still holds at `now`."""
    row = (
        await session.execute(
            sa.select(FreezeRow).where(FreezeRow.repository == repository, FreezeRow.until > now)
        )
    ).scalar_one_or_none()
    return _value(row) if row is not None else None


async def put(session: AsyncSession, freeze: Freeze) -> None:
    """Set `freeze` as the repository's freeze, replacing any earlier one."""
    values = {
        "by_github": freeze.by.github,
        "by_slack": freeze.by.slack,
        "reason": freeze.reason,
        "until": freeze.until,
        "created_at": freeze.since,
    }
    await session.execute(
        db.insert(session, FreezeRow)
        .values(repository=freeze.repository, **values)
        .on_conflict_do_update(index_elements=["repository"], set_=values)
    )


async def lift(session: AsyncSession, *, repository: str, now: datetime) -> Freeze | None:
    """Remove the repository's freeze; the one that held at `now`, if any."""
    row = (
        await session.execute(sa.select(FreezeRow).where(FreezeRow.repository == repository))
    ).scalar_one_or_none()
    if row is None:
        return None
    freeze = _value(row)
    await session.execute(sa.delete(FreezeRow).where(FreezeRow.id == row.id))
    return freeze if freeze.holds_at(now) else None
