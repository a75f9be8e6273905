"""`SharedTransactions`, the group commit under the inbox and the Slack writes: what neither
of their own tests reaches (tests/storage/test_group_commit.py, tests/slack/test_shared_writes.py).
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import audit, db
from storage.models import AuditEvent
from storage.shared_transactions import SharedTransactions


async def actors(engine: AsyncEngine) -> list[str]:
    async with db.session_factory(engine)() as session:
        rows = await session.execute(sa.select(AuditEvent.actor).order_by(AuditEvent.id))
        return list(rows.scalars())


def audited(session: AsyncSession, names: list[str]) -> None:
    for name in names:
        audit.record(session, actor=name, source="slack", action="test")


async def test_a_cancelled_writer_cancels_its_callers_and_the_next_caller_starts_anew(
    engine: AsyncEngine,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def write(session: AsyncSession, names: list[str]) -> list[str]:
        audited(session, names)
        if names == ["held"]:
            entered.set()
            await release.wait()
        return names

    shared = SharedTransactions(db.session_factory(engine), write, limit=10)
    held = asyncio.ensure_future(shared.submit("held"))
    await entered.wait()
    waiting = [asyncio.ensure_future(shared.submit(f"w{n}")) for n in range(3)]
    await asyncio.sleep(0)
    shared._writer.cancel()  # as when the loop shuts down under it
    outcomes = await asyncio.wait_for(
        asyncio.gather(held, *waiting, return_exceptions=True), timeout=5
    )
    # Nobody waits for ever, and nothing of the transaction it was in is kept.
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert await actors(engine) == []

    release.set()
    assert await asyncio.wait_for(shared.submit("after"), timeout=5) == "after"
    assert await actors(engine) == ["after"]


@pytest.mark.parametrize("alone_after_failure", [False, True])
async def test_a_lone_item_that_fails_is_written_once(
    engine: AsyncEngine, alone_after_failure: bool
) -> None:
    calls: list[list[str]] = []

    async def write(_session: AsyncSession, names: list[str]) -> list[str]:
        calls.append(names)
        raise RuntimeError("no")

    sessions = db.session_factory(engine)
    shared = SharedTransactions(sessions, write, limit=10, alone_after_failure=alone_after_failure)
    with pytest.raises(RuntimeError):
        await shared.submit("lone")
    assert calls == [["lone"]]
