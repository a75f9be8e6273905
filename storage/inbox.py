"""The webhook inbox: deliveries stored before they are answered, then worked off with leases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import db
from storage.models import InboxItem, InboxStatus, utcnow
from storage.queue import ERROR_LIMIT, WorkQueue

__all__ = ["ERROR_LIMIT", "QUEUE", "finish", "record_delivery"]


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


QUEUE: WorkQueue[InboxItem] = WorkQueue(InboxItem, finished_at="processed_at")
claim_due = QUEUE.claim_due
unclaim = QUEUE.unclaim
fail = QUEUE.fail
depth = QUEUE.depth
dead_letters = QUEUE.dead_letters
retry_dead = QUEUE.retry_dead


async def finish(
    session: AsyncSession, *, item_id: int, owner: str, status: InboxStatus, now: datetime
) -> bool:
    """Mark a claimed delivery handled (`done`) or deliberately not (`ignored`)."""
    return await QUEUE.finish(session, item_id=item_id, owner=owner, status=status.value, now=now)
