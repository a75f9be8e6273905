"""Queue workers: claim rows with a lease, complete each, retry with backoff, dead-letter.

`QueueWorker` is the loop shared by the inbox worker (here) and the outbox dispatcher
(`bot.dispatcher`). A row is finished in the same transaction as the work it records, so a
crash either leaves it claimable (its lease runs out) or finished with everything it caused.
A failure is retried with exponential backoff and dead-lettered after `max_attempts`, the
error kept; one that can never succeed (`Permanent`) is dead-lettered at once, and one the
other side asked us to send later (`RetryLater`, a rate limit) waits as long as it was told
without counting as a failed attempt. While a row is worked on, its lease is renewed, so a
slow call (a client sleeping out a rate limit) does not let another replica take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.metrics import Metrics
from storage import inbox
from storage.models import InboxItem, InboxStatus, utcnow
from storage.queue import WorkQueue

log = structlog.get_logger(__name__)


class Permanent(Exception):
    """Raised for work that can never succeed (a malformed payload): dead-letter it at once."""


class RetryLater(Exception):
    """The other side asked us to come back later (a rate limit): retry after `delay` (the
    usual backoff when it said no time), without counting an attempt toward dead-lettering."""

    def __init__(self, reason: str, *, delay: timedelta | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class MalformedDelivery(Permanent):
    """A delivery's payload lacks what its handler needs."""


class LeaseLost(Exception):
    """Another worker took the row over (our lease ran out): undo what we did."""


def worker_id() -> str:
    """A name unique to this process, so leases say whose they are."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff(attempt: int, *, base: float = 2.0, cap: float = 600.0) -> timedelta:
    """Delay before retry number `attempt` (1, 2, ...): base·2^(attempt-1), at most `cap`."""
    return timedelta(seconds=min(cap, base * 2 ** (attempt - 1)))


class QueueWorker(ABC):
    """Works a queue off until stopped; `wake()` makes it look now instead of at the next poll."""

    name = "queue"

    def __init__(
        self,
        *,
        queue: WorkQueue[Any],
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 20,
        max_attempts: int = 5,
        retry_delay: Callable[[int], timedelta] = backoff,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.metrics = metrics
        self.owner = owner or worker_id()
        self.lease = lease
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    @abstractmethod
    async def complete(self, item: Any) -> str:
        """Do the work of one claimed row and finish it (through `finish`); returns the
        outcome for the log. Raising counts a failed attempt."""

    def describe(self, item: Any) -> dict[str, Any]:
        """Fields that name the row in log lines."""
        return {"id": item.id}

    def count_failure(self, item: Any, *, dead: bool) -> None:
        if self.metrics is not None and dead:
            self.metrics.dead_letters.labels(self.name).inc()

    async def on_dead(self, item: Any, error: str) -> None:  # noqa: B027  (optional hook)
        """Called once a row is dead-lettered, for whatever must follow from giving up."""

    async def claimed(self, session: AsyncSession, items: list[Any]) -> None:  # noqa: B027
        """Called in the claim's transaction with the rows it claimed, to read what their
        work needs along with them (optional hook)."""

    async def after_batch(self) -> None:  # noqa: B027  (optional hook)
        """Called once the rows of a claimed batch were each completed (or handed back)."""

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the row in hand, hand back the rest of the batch, then return from `run`."""
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before the pass, so a wake() during the pass is not lost.
            self._wakeup.clear()
            try:
                handled = await self.run_once()
            except Exception:
                log.exception(f"{self.name} pass failed")
                handled = 0
            # A finished row may have let the next in its line through: look again at once.
            if handled or self._stopping.is_set():
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Claim one batch of due rows and complete them; returns how many were claimed."""
        async with self.sessions.begin() as session:
            items = await self.queue.claim_due(
                session, owner=self.owner, now=self.clock(), lease=self.lease, limit=self.batch
            )
            if items:
                await self.claimed(session, items)
        if not items:
            return 0
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_leases([item.id for item in items], done))
        try:
            for index, item in enumerate(items):
                if self._stopping.is_set():
                    await self._unclaim(items[index:])
                    break
                await self._process(item)
        finally:
            done.set()  # the keeper stops between renewals, never in the middle of one
            await keeper
            await self.after_batch()
        return len(items)

    async def finish(self, session: AsyncSession, item: Any, status: str, **values: Any) -> None:
        """Close `item` inside the caller's transaction, or undo it all if the lease was lost."""
        if not await self.queue.finish(
            session, item_id=item.id, owner=self.owner, status=status, now=self.clock(), **values
        ):
            raise LeaseLost

    async def _unclaim(self, items: list[Any]) -> None:
        # Stopping: hand back what we have not started, so a restart need not wait out the lease.
        async with self.sessions.begin() as session:
            for item in items:
                await self.queue.unclaim(session, item_id=item.id, owner=self.owner)

    async def _process(self, item: Any) -> None:
        bound = log.bind(queue=self.name, **self.describe(item))
        try:
            outcome = await self.complete(item)
        except LeaseLost:
            bound.warning("lease lost; another worker has it")
            return
        except Exception as exc:
            await self._record_failure(item, exc, bound)
            return
        self.log_outcome(bound, outcome)

    def log_outcome(self, bound: Any, outcome: str) -> None:
        """The line a completed row leaves in the log."""
        bound.info("completed", outcome=outcome)

    async def _keep_leases(self, item_ids: list[int], done: asyncio.Event) -> None:
        """Renew the leases on the rows of a batch every third of the lease until `done`:
        the one in hand, those waiting their turn, and those whose finishing waits for the
        batch's end (ignored deliveries), so a slow row keeps the rest from running out.
        A finished row has no lease left to renew; renewing skips it."""
        interval = self.lease.total_seconds() / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=interval)
            if done.is_set():
                return
            try:
                async with self.sessions.begin() as session:
                    await self.queue.extend(
                        session,
                        item_ids=item_ids,
                        owner=self.owner,
                        until=self.clock() + self.lease,
                    )
            except Exception:
                log.warning(f"{self.name}: could not renew leases", exc_info=True)

    async def _record_failure(self, item: Any, exc: Exception, bound: Any) -> None:
        if isinstance(exc, RetryLater):
            await self._postpone(item, exc, bound)
            return
        attempt = item.attempts + 1
        permanent = isinstance(exc, Permanent | json.JSONDecodeError)
        now = self.clock()
        retry_at = None
        if not permanent and attempt < self.max_attempts:
            retry_at = now + self.retry_delay(attempt)
        error = f"{type(exc).__name__}: {exc}"
        async with self.sessions.begin() as session:
            recorded = await self.queue.fail(
                session, item=item, owner=self.owner, error=error, now=now, retry_at=retry_at
            )
        if not recorded:
            bound.warning("failed after its lease was lost", error=error)
            return
        self.count_failure(item, dead=retry_at is None)
        if retry_at is None:
            bound.error("dead-lettered", attempts=attempt, error=error)
            await self.on_dead(item, error)
        else:
            bound.warning(
                "failed; will retry", attempts=attempt, error=error, retry_at=retry_at.isoformat()
            )

    async def _postpone(self, item: Any, exc: RetryLater, bound: Any) -> None:
        now = self.clock()
        delay = exc.delay if exc.delay is not None else self.retry_delay(item.attempts + 1)
        retry_at = now + delay
        error = f"{type(exc).__name__}: {exc}"
        async with self.sessions.begin() as session:
            recorded = await self.queue.fail(
                session,
                item=item,
                owner=self.owner,
                error=error,
                now=now,
                retry_at=retry_at,
                counts=False,
            )
        if recorded:
            bound.warning("asked to wait", error=error, retry_at=retry_at.isoformat())
        else:
            bound.warning("asked to wait after its lease was lost", error=error)


Apply = Callable[[AsyncSession], Awaitable[None]]
DeliveryHandler = Callable[[InboxItem, dict[str, Any]], Awaitable[Apply | None]]


class InboxWorker(QueueWorker):
    """Handles stored deliveries in two steps: the handler first does its reading (GitHub
    calls, outside any transaction), then returns the writes to make, which run in one
    transaction with marking the delivery done. A handler returning None ignores it; the
    ignored deliveries of a batch (most of what GitHub sends) are marked in one transaction
    after it, not one each."""

    name = "inbox"

    def __init__(
        self,
        *,
        handle: DeliveryHandler,
        on_handled: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        # A claim costs about as much as handling a dozen ignored deliveries: under load a
        # batch should take all that a group commit of the webhook route stored at once.
        kwargs.setdefault("batch", 100)
        super().__init__(queue=inbox.QUEUE, **kwargs)
        self.handle = handle
        self.on_handled = on_handled  # e.g. wake the outbox: the delivery may have made effects
        self._ignored: list[int] = []
        self._bodies: dict[int, str] = {}

    def describe(self, item: InboxItem) -> dict[str, Any]:
        return {"delivery": item.delivery_id, "github_event": item.event, "action": item.action}

    def count_failure(self, item: InboxItem, *, dead: bool) -> None:
        if self.metrics is not None:
            self.metrics.inbox_failures.labels(item.event).inc()
        super().count_failure(item, dead=dead)

    def log_outcome(self, bound: Any, outcome: str) -> None:
        # Most of what GitHub sends is ignored: a line each would be most of the log (and of
        # the worker's time). The inbox keeps every delivery with its status.
        if outcome == InboxStatus.IGNORED.value:
            bound.debug("completed", outcome=outcome)
        else:
            super().log_outcome(bound, outcome)

    async def claimed(self, session: AsyncSession, items: list[InboxItem]) -> None:
        self._bodies = await inbox.bodies(session, [item.id for item in items if item.id])

    async def complete(self, item: InboxItem) -> str:
        assert item.id is not None
        body = self._bodies.get(item.id)
        if body is None:
            raise MalformedDelivery("the delivery's body is missing")
        apply = await self.handle(item, json.loads(body))
        if apply is None:
            self._ignored.append(item.id)
            return InboxStatus.IGNORED.value
        async with self.sessions.begin() as session:
            await apply(session)
            await self.finish(session, item, InboxStatus.DONE.value)
        if self.on_handled is not None:
            self.on_handled()
        return InboxStatus.DONE.value

    async def after_batch(self) -> None:
        self._bodies = {}
        ignored, self._ignored = self._ignored, []
        if not ignored:
            return
        # If this fails, the rows stay leased and are handled again once the lease ends.
        async with self.sessions.begin() as session:
            await self.queue.finish_many(
                session,
                item_ids=ignored,
                owner=self.owner,
                status=InboxStatus.IGNORED.value,
                now=self.clock(),
            )
