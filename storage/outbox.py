"""The outbox: side effects written in the same transaction as the state that caused them,
then sent by the dispatcher with retries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage import db
from storage.models import OutboxEffect, OutboxStatus, utcnow
from storage.queue import WorkQueue

QUEUE: WorkQueue[OutboxEffect] = WorkQueue(OutboxEffect, finished_at="sent_at")
depth = QUEUE.depth
dead_letters = QUEUE.dead_letters
retry_dead = QUEUE.retry_dead


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
