"""The webhook inbox: deliveries stored before they are answered, then worked off with leases."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from storage import db, leases
from storage.models import InboxItem, InboxStatus, utcnow

ERROR_LIMIT = 4000


async def record_delivery(
    session: AsyncSession,
    *,
    source: str,
    delivery_id: str,
    event: str,
    action: str | None,
    body: str,
) -> bool:
    """Store a delivery once; False when the same source and delivery id were stored before."""
    now = utcnow()
    values = {
        "source": source,
        "delivery_id": delivery_id,
        "event": event,
        "action": action,
        "body": body,
        "status": InboxStatus.PENDING.value,
        "attempts": 0,
        "received_at": now,
        "next_attempt_at": now,
    }
    statement = (
        db.insert(session, InboxItem)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
        .returning(InboxItem.id)
    )
    result = await session.execute(statement)
    return result.scalar_one_or_none() is not None


async def claim_due(
    session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[InboxItem]:
    """Lease the oldest pending deliveries whose next attempt is due."""
    return await leases.claim(
        session,
        table=InboxItem,
        due=sa.and_(
            InboxItem.status == InboxStatus.PENDING.value, InboxItem.next_attempt_at <= now
        ),
        order_by=[InboxItem.next_attempt_at, InboxItem.id],
        owner=owner,
        now=now,
        lease=lease,
        limit=limit,
    )


async def finish(
    session: AsyncSession, *, item_id: int, owner: str, status: InboxStatus, now: datetime
) -> bool:
    """Mark a claimed delivery handled (`done`) or deliberately not (`ignored`)."""
    return await leases.release(
        session,
        table=InboxItem,
        row_id=item_id,
        owner=owner,
        status=status.value,
        processed_at=now,
    )


async def unclaim(session: AsyncSession, *, item_id: int, owner: str) -> bool:
    """Give a claimed delivery back untouched."""
    return await leases.release(session, table=InboxItem, row_id=item_id, owner=owner)


async def fail(
    session: AsyncSession,
    *,
    item: InboxItem,
    owner: str,
    error: str,
    now: datetime,
    retry_at: datetime | None,
) -> bool:
    """Count a failed attempt; retry at `retry_at`, or dead-letter the delivery when it is None."""
    status = InboxStatus.PENDING if retry_at is not None else InboxStatus.DEAD
    return await leases.release(
        session,
        table=InboxItem,
        row_id=item.id,
        owner=owner,
        status=status.value,
        attempts=InboxItem.attempts + 1,
        last_error=error[:ERROR_LIMIT],
        next_attempt_at=retry_at or now,
        processed_at=None if retry_at is not None else now,
    )


async def depth(session: AsyncSession) -> int:
    """Deliveries waiting to be handled."""
    result = await session.execute(
        select(sa.func.count()).where(InboxItem.status == InboxStatus.PENDING.value)
    )
    return int(result.scalar_one())


async def dead_letters(session: AsyncSession, *, limit: int = 100) -> list[InboxItem]:
    """Deliveries given up on, newest first, with the error that stopped them."""
    result = await session.execute(
        select(InboxItem)
        .where(InboxItem.status == InboxStatus.DEAD.value)
        .order_by(InboxItem.id.desc())
        .limit(limit)
    )
    return list(result.scalars().all())


async def retry_dead(session: AsyncSession, *, item_id: int, now: datetime) -> bool:
    """Put a dead letter back in line, with a fresh attempt count."""
    result = await session.execute(
        sa.update(InboxItem)
        .where(InboxItem.id == item_id, InboxItem.status == InboxStatus.DEAD.value)
        .values(status=InboxStatus.PENDING.value, attempts=0, next_attempt_at=now)
    )
    return bool(result.rowcount)
