"""The webhook inbox: deliveries stored before they are answered, then worked off with leases.

Requests that arrive together share one transaction (`GroupCommit`): a commit per delivery
would cap ingest at what the database can commit one by one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import db
from storage.models import InboxBody, InboxItem, InboxStatus, utcnow
from storage.queue import ERROR_LIMIT, WorkQueue
from storage.shared_transactions import SharedTransactions

__all__ = [
    "ERROR_LIMIT",
    "QUEUE",
    "Delivery",
    "GroupCommit",
    "bodies",
    "finish",
    "record_deliveries",
    "record_delivery",
]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery as it is stored: its body is the raw text that was signed."""

    source: str
    delivery_id: str
    event: str
    action: str | None
    body: str

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.delivery_id


async def record_deliveries(session: AsyncSession, deliveries: Sequence[Delivery]) -> list[bool]:
    """Store each delivery once, its row and its body in a statement each; for each, False
    when the same source and delivery id were stored before (or earlier in `deliveries`)."""
    now = utcnow()
    first = {delivery.key: index for index, delivery in reversed(list(enumerate(deliveries)))}
    rows = [
        {
            "source": delivery.source,
            "delivery_id": delivery.delivery_id,
            "event": delivery.event,
            "action": delivery.action,
            "status": InboxStatus.PENDING.value,
            "attempts": 0,
            "received_at": now,
            "next_attempt_at": now,
        }
        for index, delivery in enumerate(deliveries)
        if first[delivery.key] == index
    ]
    if not rows:
        return []
    # One compiled statement for any number of rows (SQLAlchemy's "insertmanyvalues"
    # batches them): a multi-VALUES statement would be compiled again for every size.
    table = InboxItem.__table__  # type: ignore[attr-defined]
    statement = (
        db.insert(session, table)
        .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
        .returning(table.c.id, table.c.source, table.c.delivery_id)
    )
    stored = {
        (source, delivery_id): row_id
        for row_id, source, delivery_id in await session.execute(statement, rows)
    }
    bodies = [
        {"id": stored[delivery.key], "body": delivery.body}
        for index, delivery in enumerate(deliveries)
        if first[delivery.key] == index and delivery.key in stored
    ]
    if bodies:
        await session.execute(sa.insert(InboxBody.__table__), bodies)  # type: ignore[attr-defined]
    return [
        first[delivery.key] == index and delivery.key in stored
        for index, delivery in enumerate(deliveries)
    ]


async def bodies(session: AsyncSession, item_ids: Collection[int]) -> dict[int, str]:
    """The stored bodies of these deliveries, by inbox id."""
    result = await session.execute(
        sa.select(InboxBody.id, InboxBody.body).where(InboxBody.id.in_(item_ids))  # type: ignore[attr-defined]
    )
    return {row_id: body for row_id, body in result.all()}


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
    delivery = Delivery(source, delivery_id, event, action, body)
    (stored,) = await record_deliveries(session, [delivery])
    return stored


class GroupCommit(SharedTransactions[Delivery, bool]):
    """Stores the deliveries of concurrent requests in shared transactions, one statement
    for each (`record_deliveries`), so an answer never runs ahead of what is on disk. A
    transaction that fails fails every request it held, and stores none of them."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, limit: int = 500) -> None:
        super().__init__(sessions, record_deliveries, limit=limit)

    def store(self, delivery: Delivery) -> Awaitable[bool]:
        """Store `delivery`; False when it was stored before. Raises what the database raised
        for the transaction that was to hold it (nothing of that transaction is stored)."""
        return self.submit(delivery)  # not awaited here: no coroutine of its own per request


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
