"""What the reconciler of missed deliveries asked GitHub to redeliver, and what the inbox holds.

A `hook_redelivery` row is both the memory and the claim: the replica whose insert of a
delivery attempt succeeds asks GitHub, the others skip it, and the next run does not ask
again. A claim is marked requested once GitHub accepted, and dropped when GitHub refused
(so a later run tries again); a replica that died in between leaves a claim that is free
again once `lease` has passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage import db
from storage.models import HookRedelivery, InboxItem

# Bound parameters per statement stay well under SQLite's and asyncpg's limits.
_CHUNK = 500


@dataclass(frozen=True)
class Asked:
    """What was asked for one guid: every attempt claimed, how many redeliveries GitHub
    accepted, and when the last was asked for."""

    delivery_ids: frozenset[int]
    requests: int
    last_requested_at: datetime | None


async def stored_guids(session: AsyncSession, *, source: str, guids: Iterable[str]) -> set[str]:
    """The delivery ids (`X-GitHub-Delivery` guids) among `guids` the inbox has stored."""
    found: set[str] = set()
    for chunk in _chunks(guids):
        rows = await session.execute(
            sa.select(InboxItem.delivery_id).where(
                InboxItem.source == source, InboxItem.delivery_id.in_(chunk)
            )
        )
        found.update(rows.scalars())
    return found


async def asked(session: AsyncSession, *, guids: Iterable[str]) -> dict[str, Asked]:
    """What was asked before for each of `guids` (absent: nothing)."""
    rows: list[Any] = []
    for chunk in _chunks(guids):
        result = await session.execute(
            sa.select(
                HookRedelivery.guid, HookRedelivery.delivery_id, HookRedelivery.requested_at
            ).where(HookRedelivery.guid.in_(chunk))
        )
        rows.extend(result.all())
    by_guid: dict[str, list[Any]] = {}
    for row in rows:
        by_guid.setdefault(row.guid, []).append(row)
    return {
        guid: Asked(
            delivery_ids=frozenset(row.delivery_id for row in found),
            requests=sum(row.requested_at is not None for row in found),
            last_requested_at=max(
                (row.requested_at for row in found if row.requested_at is not None), default=None
            ),
        )
        for guid, found in by_guid.items()
    }


async def claim(
    session: AsyncSession,
    *,
    delivery_id: int,
    guid: str,
    event: str,
    action: str | None,
    status_code: int | None,
    delivered_at: datetime,
    owner: str,
    now: datetime,
    lease: timedelta,
) -> bool:
    """Claim asking for a redelivery of one attempt; False when it was asked for, or is being
    asked for by someone whose claim is younger than `lease`."""
    inserted = await session.execute(
        db.insert(session, HookRedelivery)
        .values(
            delivery_id=delivery_id,
            guid=guid,
            event=event,
            action=action,
            status_code=status_code,
            delivered_at=delivered_at,
            claimed_by=owner,
            claimed_at=now,
        )
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(HookRedelivery.delivery_id)
    )
    if inserted.scalar_one_or_none() is not None:
        return True
    taken: Any = await session.execute(
        sa.update(HookRedelivery)
        .where(
            HookRedelivery.delivery_id == delivery_id,
            HookRedelivery.requested_at.is_(None),  # type: ignore[union-attr]
            HookRedelivery.claimed_at < now - lease,
        )
        .values(claimed_by=owner, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount)


async def mark_requested(
    session: AsyncSession, *, delivery_id: int, owner: str, now: datetime
) -> None:
    """GitHub accepted the redelivery of a claimed attempt."""
    await session.execute(
        sa.update(HookRedelivery)
        .where(HookRedelivery.delivery_id == delivery_id, HookRedelivery.claimed_by == owner)
        .values(requested_at=now)
        .execution_options(synchronize_session=False)
    )


async def drop_claim(session: AsyncSession, *, delivery_id: int, owner: str) -> None:
    """GitHub refused: forget the claim, so a later run asks again."""
    await session.execute(
        sa.delete(HookRedelivery).where(
            HookRedelivery.delivery_id == delivery_id,
            HookRedelivery.claimed_by == owner,
            HookRedelivery.requested_at.is_(None),  # type: ignore[union-attr]
        )
    )


async def forget_before(session: AsyncSession, *, before: datetime) -> int:
    """Delete rows of attempts delivered before `before` (GitHub no longer redelivers them)."""
    result: Any = await session.execute(
        sa.delete(HookRedelivery).where(HookRedelivery.delivered_at < before)
    )
    return int(result.rowcount or 0)


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for value in dict.fromkeys(values):
        chunk.append(value)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
