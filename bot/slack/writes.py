"""The write transactions of concurrent clicks, made together (group commit).

A burst of clicks is a burst of small transactions: an audit entry, a decision, a board to
draw again. Made one each, on SQLite they queue for its one write lock (a waiter sleeps
and retries, so the lock sits idle while it sleeps) and each syncs the disk; on
PostgreSQL each is a commit of its own. `SharedWrites` makes them one after another in
shared transactions instead, committed once for the lot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.shared_transactions import SharedTransactions

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]


class SharedWrites(SharedTransactions[Work, Any]):
    """Runs pieces of write work in shared transactions (`SharedTransactions`), up to
    `limit` in each, one after another in the order they came. If a piece raises, that
    transaction is rolled back and each of its pieces is made again in a transaction of its
    own, so one piece's failure is its caller's alone.

    A piece must be safe to make again after a rollback: it writes through `session` only,
    and talks to nothing else. It returns plain values, not rows of the shared session.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, limit: int = 100) -> None:
        super().__init__(
            sessions,
            _one_after_another,
            limit=limit,
            name="slack-shared-writes",
            alone_after_failure=True,
        )

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(session)` in a shared transaction; its result once that is committed, or
        what it (or the commit of its own transaction) raised."""
        return await self.submit(work)


async def _one_after_another(session: AsyncSession, pieces: list[Work]) -> list[Any]:
    results = []
    for work in pieces:
        # Each piece reads rows as they are now, not as a piece before it loaded them: other
        # transactions may write meanwhile (PostgreSQL).
        session.expire_all()
        results.append(await work(session))
    return results
