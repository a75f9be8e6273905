"""A table worked off with leases: the inbox and the outbox are both one.

Rows are `pending` until claimed and finished; a failed attempt is retried later or, when
no retry is left, dead-lettered with its error (status `dead`), from where an operator can
put it back in line.

A queue may be ordered by a column (`ordered_by`): rows that share its value are worked off
one at a time in id order. A row is due only when no earlier row with its key is pending,
whether that one is in another worker's hands or waiting out a retry; a dead-lettered one no
longer holds the rest back. Rows without a key are not held back at all.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import SQLModel

from storage import leases

Row = TypeVar("Row", bound=SQLModel)

PENDING, DEAD = "pending", "dead"
ERROR_LIMIT = 4000


class WorkQueue(Generic[Row]):
    """Queue operations over `table`, which has status, attempts, last_error,
    next_attempt_at, lease columns and a `finished_at` column of its own name."""

    def __init__(
        self, table: type[Row], *, finished_at: str, ordered_by: str | None = None
    ) -> None:
        self.table: Any = table
        self.finished_at = finished_at
        self.ordered_by = ordered_by

    async def claim_due(
        self, session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
    ) -> list[Row]:
        """Lease the oldest pending rows whose next attempt is due (and, in an ordered queue,
        that are first in line for their key), in the order they should be worked off."""
        table = self.table
        due = sa.and_(table.status == PENDING, table.next_attempt_at <= now)
        if self.ordered_by is not None:
            due = sa.and_(due, ~self._earlier_pending())
        rows = await leases.claim(
            session,
            table=table,
            due=due,
            order_by=[table.next_attempt_at, table.id],
            owner=owner,
            now=now,
            lease=lease,
            limit=limit,
            note_interrupted=hasattr(table, "interrupted"),
        )
        # RETURNING promises no order.
        return sorted(rows, key=lambda row: (row.next_attempt_at, row.id))  # type: ignore[attr-defined]

    def _earlier_pending(self) -> sa.Exists:
        """An earlier pending row has the same ordering key (never true for a null key)."""
        assert self.ordered_by is not None
        earlier = aliased(self.table)
        return sa.exists().where(
            getattr(earlier, self.ordered_by) == getattr(self.table, self.ordered_by),
            earlier.status == PENDING,
            earlier.id < self.table.id,
        )

    async def extend(
        self, session: AsyncSession, *, item_ids: Collection[int], owner: str, until: datetime
    ) -> None:
        """Keep claimed rows for longer, in one statement; rows whose lease was lost meanwhile
        are left to their new owner (finishing them finds that out)."""
        await session.execute(
            sa.update(self.table)
            .where(self.table.id.in_(item_ids), self.table.lease_owner == owner)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
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

    async def finish_many(
        self, session: AsyncSession, *, item_ids: list[int], owner: str, status: str, now: datetime
    ) -> None:
        """`finish` for many rows in one statement; rows whose lease was lost are left alone."""
        rows = [
            {leases.ROW_ID: item_id, "status": status, self.finished_at: now}
            for item_id in item_ids
        ]
        await leases.release_many(session, table=self.table, owner=owner, rows=rows)

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
        counts: bool = True,
    ) -> bool:
        """Record a failed attempt; retry at `retry_at`, or dead-letter the row when it is None.
        `counts=False` (the other side only asked us to wait) leaves the attempt count alone."""
        return await leases.release(
            session,
            table=self.table,
            row_id=item.id,  # type: ignore[attr-defined]
            owner=owner,
            status=PENDING if retry_at is not None else DEAD,
            attempts=self.table.attempts + (1 if counts else 0),
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
            .values(status=PENDING, attempts=0, next_attempt_at=now, **self._may_have_sent())
        )
        return bool(result.rowcount)

    def _may_have_sent(self) -> dict[str, Any]:
        """A dead letter's tries may have reached the other side: with its attempt count
        reset, only `interrupted` tells the sender to look before sending again."""
        return {"interrupted": True} if hasattr(self.table, "interrupted") else {}

    async def dead_count(self, session: AsyncSession) -> int:
        """Rows given up on and not put back in line (what a dead-letter gauge shows)."""
        result = await session.execute(sa.select(sa.func.count()).where(self.table.status == DEAD))
        return int(result.scalar_one())

    async def retry_all_dead(
        self,
        session: AsyncSession,
        *,
        now: datetime,
        unless: sa.ColumnElement[bool] | None = None,
    ) -> list[Row]:
        """Put every dead letter back in line, as `retry_dead` does one, in one statement;
        rows matching `unless` stay dead. Returns the rows retried, in id order."""
        where = self.table.status == DEAD
        if unless is not None:
            where = sa.and_(where, sa.not_(unless))
        result = await session.execute(
            sa.update(self.table)
            .where(where)
            .values(status=PENDING, attempts=0, next_attempt_at=now, **self._may_have_sent())
            .returning(self.table)
            .execution_options(synchronize_session=False)
        )
        return sorted(result.scalars().all(), key=lambda row: row.id)
