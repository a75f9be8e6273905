"""Claiming rows with a lease, safely across processes and replicas.

One statement for both databases: `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE
SKIP LOCKED) AND <still free> RETURNING *`. PostgreSQL skips rows another replica is
claiming; SQLite has no row locks, so the lock clause is dropped and the claim is a
compare-and-set that SQLite's single writer makes atomic. A crashed owner's rows become
claimable again when `lease_until` passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

Row = TypeVar("Row", bound=SQLModel)


def lease_is_free(table: type[SQLModel], now: datetime) -> sa.ColumnElement[bool]:
    """No one holds the row, or the holder's lease has run out."""
    lease_until: Any = table.lease_until  # type: ignore[attr-defined]
    return sa.or_(lease_until.is_(None), lease_until < now)


async def claim(
    session: AsyncSession,
    *,
    table: type[Row],
    due: sa.ColumnElement[bool],
    order_by: Sequence[Any],
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    note_interrupted: bool = False,
) -> list[Row]:
    """Lease up to `limit` due rows to `owner` until `now + lease`; returns the claimed rows.
    `note_interrupted`: set the row's `interrupted` when an earlier owner still held it (it
    died, or its lease ran out, before it finished or failed the row). Once set it stays, as
    does the doubt about what was sent before (`WorkQueue.retry_dead` sets it too)."""
    statement = _claim(table, table, due, order_by, owner, now, lease, limit, note_interrupted)
    result = await session.execute(statement.returning(table))
    return list(result.scalars().all())


async def claim_rows(
    session: AsyncSession,
    *,
    table: type[SQLModel],
    due: sa.ColumnElement[bool],
    order_by: Sequence[Any],
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> Sequence[sa.Row[Any]]:
    """`claim`, returning plain rows (the table's columns by name) instead of ORM objects:
    for claims of thousands, where building and tracking the objects costs more than the
    statement itself."""
    core: Any = table.__table__  # type: ignore[attr-defined]
    statement = _claim(table, core, due, order_by, owner, now, lease, limit, False)
    result = await session.execute(statement.returning(*core.columns))
    return result.all()


def _claim(
    table: type[SQLModel],
    target: Any,
    due: sa.ColumnElement[bool],
    order_by: Sequence[Any],
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    note_interrupted: bool,
) -> Any:
    table_: Any = table
    free = lease_is_free(table, now)
    candidates = (
        sa.select(table_.id)
        .where(due, free)
        .order_by(*order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        sa.update(target)
        .where(table_.id.in_(candidates.scalar_subquery()), free)
        .values(
            lease_owner=owner,
            lease_until=now + lease,
            # The right-hand side reads the row as it was before this update.
            **(
                {"interrupted": sa.or_(table_.interrupted, table_.lease_owner.is_not(None))}
                if note_interrupted
                else {}
            ),
        )
        .execution_options(synchronize_session=False)
    )


async def release(
    session: AsyncSession, *, table: type[SQLModel], row_id: int, owner: str, **values: Any
) -> bool:
    """Write `values` and drop the lease, only if `owner` still holds it. False if it was lost."""
    table_: Any = table
    statement = (
        sa.update(table_)
        .where(table_.id == row_id, table_.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(statement)
    return bool(result.rowcount)


ROW_ID = "row_id"


async def release_many(
    session: AsyncSession,
    *,
    table: type[SQLModel],
    owner: str,
    rows: Sequence[Mapping[str, Any]],
    guard: str | None = None,
) -> None:
    """`release` for many rows in one statement (an executemany). Each mapping names its row
    by `ROW_ID`; with a `guard` column, also the value the row must still have under
    `row_<guard>` (a row changed since is left alone, still leased); every other key is a
    column to write. Rows that `owner` no longer holds are not written. Whether a given row
    was written is not told: ask `held` afterwards."""
    if not rows:
        return
    table_: Any = table
    columns = table_.__table__.c
    where = [columns.id == sa.bindparam(ROW_ID), columns.lease_owner == owner]
    if guard is not None:
        where.append(columns[guard] == sa.bindparam(f"row_{guard}"))
    # The columns to write come from each mapping's other keys (SQLAlchemy adds them to SET).
    statement = sa.update(table_.__table__).where(*where).values(lease_owner=None, lease_until=None)
    await session.execute(statement, list(rows))


async def held(
    session: AsyncSession, *, table: type[SQLModel], owner: str, until: datetime
) -> set[int]:
    """The ids of the rows `owner` holds on the lease it took until `until` (one claim's)."""
    table_: Any = table
    result = await session.execute(
        sa.select(table_.id).where(table_.lease_owner == owner, table_.lease_until == until)
    )
    return set(result.scalars())
