"""The writes of concurrent clicks (an audit entry, a decision, a board to draw again),
made together in shared transactions (group commit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.shared_transactions import SharedTransactions

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]


class SharedWrites(SharedTransactions[Work, Any]):
    """Runs pieces of write work one after another in shared transactions. If a piece
    raises, the transaction is rolled back and each of its pieces is made again alone, so
    its failure is its caller's alone: a piece must write through `session` only, talk to
    nothing else, and return plain values, not rows of the shared session.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, limit: int = 100) -> None:
        super().__init__(sessions, _one_after_another, limit=limit, alone_after_failure=True)

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
