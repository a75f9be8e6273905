"""Outbox helpers shared by the dispatcher and outbox tests: read an effect's row by its
key, and run a dispatcher until nothing is due."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from storage.models import OutboxEffect

if TYPE_CHECKING:
    from bot.dispatcher import OutboxDispatcher


async def effect_row(sessions, key: str) -> OutboxEffect:
    """The outbox row of the effect with idempotency key `key`."""
    async with sessions() as session:
        result = await session.execute(
            sa.select(OutboxEffect).where(OutboxEffect.idempotency_key == key)
        )
        return result.scalar_one()


async def drain(dispatcher: OutboxDispatcher) -> None:
    """Pass after pass until nothing is due (a line lets its next effect through each pass)."""
    for _ in range(500):
        if await dispatcher.run_once() == 0:
            return
    raise AssertionError("the outbox did not drain")
