"""The outbox: side effects written in the same transaction as the state that caused them,
then sent by the dispatcher with retries.

Effects of one Slack thread share an ordering key, so they are sent one at a time in the
order they were written (see `storage.queue`): a reply that fails holds back the replies
after it, not other threads. Board refreshes of a release have a key of their own, so a
stuck reply never keeps the board stale, and one refresh can serve all that wait together.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage import db, leases
from storage.models import OutboxEffect, OutboxStatus, utcnow
from storage.queue import WorkQueue

QUEUE: WorkQueue[OutboxEffect] = WorkQueue(
    OutboxEffect, finished_at="sent_at", ordered_by="ordering_key"
)
depth = QUEUE.depth
dead_letters = QUEUE.dead_letters
retry_dead = QUEUE.retry_dead

# Effects posted into (or updating a message of) a release's Slack thread.
_THREAD_KINDS = frozenset({"ThreadReply", "ApprovalRequest", "ApprovalDecided"})
_BOARD_KIND = "RefreshBoard"


def thread_key(release_id: int) -> str:
    return f"thread:{release_id}"


def board_key(release_id: int) -> str:
    return f"board:{release_id}"


def ordering_key(kind: str, payload: dict[str, Any]) -> str | None:
    """The line an effect waits in: its release's thread, its release's board, or none."""
    release_id = payload.get("release_id")
    if release_id is None:
        return None
    if kind == _BOARD_KIND:
        return board_key(release_id)
    if kind in _THREAD_KINDS:
        return thread_key(release_id)
    return None


async def enqueue(
    session: AsyncSession, *, kind: str, payload: dict[str, Any], idempotency_key: str
) -> bool:
    """Add an effect once; False when an effect with this idempotency key already exists."""
    now = utcnow()
    statement = (
        db.insert(session, OutboxEffect)
        .values(
            kind=kind,
            payload=payload,
            idempotency_key=idempotency_key,
            ordering_key=ordering_key(kind, payload),
            status=OutboxStatus.PENDING.value,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboxEffect.id)
    )
    result = await session.execute(statement)
    return result.scalar_one_or_none() is not None


async def sent_result(session: AsyncSession, *, idempotency_key: str) -> dict[str, Any] | None:
    """What sending an effect produced (a message's ts, a deployment's id), once it was sent."""
    result = await session.execute(
        sa.select(OutboxEffect.result).where(
            OutboxEffect.idempotency_key == idempotency_key,
            OutboxEffect.status == OutboxStatus.SENT.value,
        )
    )
    return result.scalar_one_or_none()


async def status_of(session: AsyncSession, *, idempotency_key: str) -> str | None:
    """Where an effect stands (`pending`, `sent`, `dead`); None if it was never written."""
    result = await session.execute(
        sa.select(OutboxEffect.status).where(OutboxEffect.idempotency_key == idempotency_key)
    )
    return result.scalar_one_or_none()


async def pending_ids(session: AsyncSession, *, ordering_key: str) -> list[int]:
    """The effects waiting in one line, first first."""
    result = await session.execute(
        sa.select(OutboxEffect.id)
        .where(
            OutboxEffect.ordering_key == ordering_key,
            OutboxEffect.status == OutboxStatus.PENDING.value,
        )
        .order_by(OutboxEffect.id)
    )
    return list(result.scalars())


async def last_sent_result(session: AsyncSession, *, ordering_key: str) -> dict[str, Any] | None:
    """The result of the effect of this line sent last (e.g. the board a thread shows)."""
    result = await session.execute(
        sa.select(OutboxEffect.result)
        .where(
            OutboxEffect.ordering_key == ordering_key,
            OutboxEffect.status == OutboxStatus.SENT.value,
        )
        .order_by(OutboxEffect.sent_at.desc(), OutboxEffect.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def coalesce(
    session: AsyncSession,
    *,
    item_ids: Collection[int],
    result: dict[str, Any],
    now: datetime,
) -> int:
    """Mark waiting effects sent because another send served them too (a board refresh drawn
    after they were written); rows someone else holds are left alone. Returns how many."""
    if not item_ids:
        return 0
    outcome: Any = await session.execute(
        sa.update(OutboxEffect)
        .where(
            OutboxEffect.id.in_(list(item_ids)),
            OutboxEffect.status == OutboxStatus.PENDING.value,
            leases.lease_is_free(OutboxEffect, now),
        )
        .values(
            status=OutboxStatus.SENT.value,
            sent_at=now,
            result=result,
            lease_owner=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(outcome.rowcount)


async def record_sent(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
    result: dict[str, Any],
    now: datetime,
) -> None:
    """Write down an effect that was carried out as part of another (the board posted when a
    reply opened its thread), so later sends of its line know what is already shown."""
    statement = (
        db.insert(session, OutboxEffect)
        .values(
            kind=kind,
            payload=payload,
            idempotency_key=idempotency_key,
            ordering_key=ordering_key(kind, payload),
            status=OutboxStatus.SENT.value,
            attempts=0,
            result=result,
            created_at=now,
            next_attempt_at=now,
            sent_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    await session.execute(statement)
