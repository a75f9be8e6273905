"""The write transactions of concurrent clicks, made together (group commit).

A burst of clicks is a burst of small transactions: an audit entry, a decision, a board to
draw again. Made one each, on SQLite they queue for its one write lock (a waiter sleeps
and retries, so the lock sits idle while it sleeps) and each syncs the disk; on
PostgreSQL each is a commit of its own. `SharedWrites` makes them one after another in
shared transactions instead, committed once for the lot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]
_Waiting = tuple[Work, "asyncio.Future[Any]"]


class SharedWrites:
    """Runs pieces of write work in shared transactions.

    The first piece to arrive is written at once, so a lone click waits for one commit as
    before; pieces that arrive while a transaction is open are written together in the next
    one, up to `limit` in each, in the order they came. If a piece raises, that transaction
    is rolled back and each of its pieces is made again in a transaction of its own, so one
    piece's failure is its caller's alone. Each caller returns only after the commit that
    holds its writes, so nothing it says afterwards runs ahead of what is stored.

    A piece must be safe to make again after a rollback: it writes through `session` only,
    and talks to nothing else. It returns plain values, not rows of the shared session.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, limit: int = 100) -> None:
        self.sessions = sessions
        self.limit = limit
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(session)` in a shared transaction; its result once that is committed, or
        what it (or the commit of its own transaction) raised."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="slack-shared-writes")
        return await future

    async def _write(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
                if len(batch) == 1 or not await self._together(batch):
                    for one in batch:
                        await self._alone(one)
                batch = []
        finally:
            self._writer = None
            # Only a cancelled writer leaves any: their callers must not wait for ever.
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting = []

    async def _together(self, batch: list[_Waiting]) -> bool:
        """The batch in one transaction; False (nothing kept, nobody answered) if any piece
        or the commit raised."""
        results: list[Any] = []
        try:
            async with self.sessions.begin() as session:
                for work, _ in batch:
                    # Each piece reads rows as they are now, not as a piece before it loaded
                    # them: other transactions may write meanwhile (PostgreSQL).
                    session.expire_all()
                    results.append(await work(session))
        except Exception:
            return False
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(result)
        return True

    async def _alone(self, waiting: _Waiting) -> None:
        work, future = waiting
        try:
            async with self.sessions.begin() as session:
                result = await work(session)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
