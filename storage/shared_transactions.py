"""Group commit: the writes of concurrent callers made together in shared transactions.

A small write costs mostly its commit: on SQLite a disk sync under the one write lock (a
writer waiting for it sleeps and retries, so it sits idle meanwhile), on PostgreSQL a round
trip and a log flush.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Item = TypeVar("Item")
Result = TypeVar("Result")


class SharedTransactions(Generic[Item, Result]):
    """Writes the items of concurrent callers in shared transactions, in the order they came.

    `write(session, items)` writes a batch and returns a result for each item. The first
    item is written at once, so a lone caller waits for one commit; those that arrive
    meanwhile are written together in the next transaction, up to `limit` in each. A caller
    returns only after the commit that holds its item. If a transaction fails, nothing of it
    is kept and each of its callers gets what was raised; with `alone_after_failure`, each
    item is written again in a transaction of its own, so the failure is its caller's alone.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        write: Callable[[AsyncSession, list[Item]], Awaitable[Sequence[Result]]],
        *,
        limit: int,
        alone_after_failure: bool = False,
    ) -> None:
        self.sessions = sessions
        self.write = write
        self.limit = limit
        self.alone_after_failure = alone_after_failure
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """`item` written in a shared transaction: its result once that is committed, or what
        the transaction that was to hold it raised."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name=type(self).__name__)
        return await future

    async def _write(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
                await self._commit(batch)
                batch = []
        finally:
            self._writer = None
            # Only a cancelled writer leaves any: their callers must not wait for ever.
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting = []

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            async with self.sessions.begin() as session:
                results = await self.write(session, [item for item, _ in batch])
        except Exception as exc:
            if self.alone_after_failure and len(batch) > 1:
                for one in batch:
                    await self._commit([one])
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(result)
