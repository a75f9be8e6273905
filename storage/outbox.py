"""The outbox: side effects written in the same transaction as the state that caused them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from storage import db
from storage.models import OutboxEffect, OutboxStatus, utcnow


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


async def depth(session: AsyncSession) -> int:
    """Effects not yet sent."""
    result = await session.execute(
        select(sa.func.count()).where(OutboxEffect.status == OutboxStatus.PENDING.value)
    )
    return int(result.scalar_one())
