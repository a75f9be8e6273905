"""A table worked off with leases: the inbox and the outbox are both one.

Rows are `pending` until claimed and finished; a failed attempt is retried later or, when
no retry is left, dead-lettered with its error (status `dead`), from where an operator can
put it back in line.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from storage import leases

Row = TypeVar("Row", bound=SQLModel)

PENDING, DEAD = "pending", "dead"
ERROR_LIMIT = 4000


class WorkQueue(Generic[Row]):
    """Queue operations over `table`, which has status, attempts, last_error,
    next_attempt_at, lease columns and a `finished_at` column of its own name."""

    def __init__(self, table: type[Row], *, finished_at: str) -> None:
        self.table: Any = table
        self.finished_at = finished_at

    async def claim_due(
        self, session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
    ) -> list[Row]:
        """Lease the oldest pending rows whose next attempt is due."""
        table = self.table
        return await leases.claim(
            session,
            table=table,
            due=sa.and_(table.status == PENDING, table.next_attempt_at <= now),
            order_by=[table.next_attempt_at, table.id],
            owner=owner,
            now=now,
            lease=lease,
            limit=limit,
        )

    async def finish(
        self,
        session: AsyncSession,
        *,
        item_id: int,
        owner: str,
        status: str,
        now: datetime,
        **values: Any,
    ) -> bool:
        """Close a claimed row with `status`; False if our lease was lost meanwhile."""
        return await leases.release(
            session,
            table=self.table,
            row_id=item_id,
            owner=owner,
            status=status,
            **{self.finished_at: now},
            **values,
        )

    async def unclaim(self, session: AsyncSession, *, item_id: int, owner: str) -> bool:
        """Give a claimed row back untouched."""
        return await leases.release(session, table=self.table, row_id=item_id, owner=owner)

    async def fail(
        self,
        session: AsyncSession,
        *,
        item: Row,
        owner: str,
        error: str,
        now: datetime,
        retry_at: datetime | None,
    ) -> bool:
        """Count a failed attempt; retry at `retry_at`, or dead-letter the row when it is None."""
        return await leases.release(
            session,
            table=self.table,
            row_id=item.id,  # type: ignore[attr-defined]
            owner=owner,
            status=PENDING if retry_at is not None else DEAD,
            attempts=self.table.attempts + 1,
            last_error=error[:ERROR_LIMIT],
            next_attempt_at=retry_at or now,
            **{self.finished_at: None if retry_at is not None else now},
        )

    async def depth(self, session: AsyncSession) -> int:
        """Rows waiting to be worked off."""
        result = await session.execute(
            sa.select(sa.func.count()).where(self.table.status == PENDING)
        )
        return int(result.scalar_one())

    async def dead_letters(self, session: AsyncSession, *, limit: int = 100) -> list[Row]:
        """Rows given up on, newest first, with the error that stopped them."""
        result = await session.execute(
            sa.select(self.table)
            .where(self.table.status == DEAD)
            .order_by(self.table.id.desc())
            .limit(limit)
        )
        return list(result.scalars().all())

    async def retry_dead(self, session: AsyncSession, *, item_id: int, now: datetime) -> bool:
        """Put a dead letter back in line, with a fresh attempt count."""
        result: Any = await session.execute(
            sa.update(self.table)
            .where(self.table.id == item_id, self.table.status == DEAD)
            .values(status=PENDING, attempts=0, next_attempt_at=now)
        )
        return bool(result.rowcount)
