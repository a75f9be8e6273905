"""The writes of concurrent callers, made together in shared transactions (group commit).

A small write costs mostly its commit: on SQLite a disk sync under the one write lock, which
every other writer waits for; on PostgreSQL a round trip and a log flush. Callers that come
together hand their items to one writer task, which writes what is waiting in one
transaction, then what came meanwhile in the next, and so on until nothing waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Item = TypeVar("Item")
Result = TypeVar("Result")


class SharedTransactions(Generic[Item, Result]):
    """Writes the items of concurrent callers in shared transactions.

    `write(session, items)` writes a batch in the transaction of `session` and returns one
    result for each item, in order. The first item to arrive is written at once, so a lone
    caller waits for one commit; items that arrive while a transaction is open are written
    together in the next one, up to `limit` in each, in the order they came. Each caller
    returns only after the commit that holds its item, so nothing it says afterwards runs
    ahead of what is stored.

    When a batch's transaction fails, nothing of it is kept, and each of its callers gets
    what was raised; with `alone_after_failure`, each of its items is written again in a
    transaction of its own instead, so one item's failure is its caller's alone (`write` must
    then be safe to make again after a rollback).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        write: Callable[[AsyncSession, list[Item]], Awaitable[Sequence[Result]]],
        *,
        limit: int,
        name: str,
        alone_after_failure: bool = False,
    ) -> None:
        self.sessions = sessions
        self.write = write
        self.limit = limit
        self.name = name
        self.alone_after_failure = alone_after_failure
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """`item` written in a shared transaction: its result once that is committed, or what
        the transaction that was to hold it raised."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name=self.name)
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
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(result)
