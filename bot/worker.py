"""The inbox worker: claims stored deliveries with a lease, handles each, retries, dead-letters.

Each delivery is handled in one transaction together with marking it done, so a crash either
leaves it claimable (its lease runs out) or finished with everything it caused. A handler that
raises is retried with exponential backoff and dead-lettered after `max_attempts`, the error
kept; a delivery that can never be handled (`MalformedDelivery`, bad JSON) is dead-lettered
at once, since retrying cannot help.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.metrics import Metrics
from storage import inbox
from storage.models import InboxItem, InboxStatus, utcnow

log = structlog.get_logger(__name__)

DeliveryHandler = Callable[[AsyncSession, InboxItem, dict[str, Any]], Awaitable[bool]]


class MalformedDelivery(Exception):
    """Raised by a handler for a payload that can never be handled: dead-letter it at once."""


class LeaseLost(Exception):
    """Another worker took the delivery over (our lease ran out): undo what we did."""


def worker_id() -> str:
    """A name unique to this process, so leases say whose they are."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff(attempt: int, *, base: float = 2.0, cap: float = 600.0) -> timedelta:
    """Delay before retry number `attempt` (1, 2, ...): base·2^(attempt-1), at most `cap`."""
    return timedelta(seconds=min(cap, base * 2 ** (attempt - 1)))


class InboxWorker:
    """Drains the inbox until stopped; `wake()` makes it look now instead of at the next poll."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        handle: DeliveryHandler,
        metrics: Metrics | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 20,
        max_attempts: int = 5,
        retry_delay: Callable[[int], timedelta] = backoff,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.handle = handle
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

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the delivery in hand, then return from `run`; unstarted claims expire."""
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before the pass, so a wake() during the pass is not lost.
            self._wakeup.clear()
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("inbox worker pass failed")
                handled = 0
            if handled >= self.batch or self._stopping.is_set():
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and handle them; returns how many were claimed."""
        async with self.sessions.begin() as session:
            items = await inbox.claim_due(
                session, owner=self.owner, now=self.clock(), lease=self.lease, limit=self.batch
            )
        for index, item in enumerate(items):
            if self._stopping.is_set():
                await self._unclaim(items[index:])
                break
            await self._process(item)
        return len(items)

    async def _unclaim(self, items: list[InboxItem]) -> None:
        # Stopping: hand back what we have not started, so a restart need not wait out the lease.
        async with self.sessions.begin() as session:
            for item in items:
                await inbox.unclaim(session, item_id=item.id, owner=self.owner)

    async def _process(self, item: InboxItem) -> None:
        bound = log.bind(delivery=item.delivery_id, github_event=item.event, action=item.action)
        try:
            async with self.sessions.begin() as session:
                handled = await self.handle(session, item, json.loads(item.body))
                status = InboxStatus.DONE if handled else InboxStatus.IGNORED
                if not await inbox.finish(
                    session, item_id=item.id, owner=self.owner, status=status, now=self.clock()
                ):
                    raise LeaseLost
        except LeaseLost:
            bound.warning("delivery lease lost; another worker has it")
            return
        except Exception as exc:
            await self._record_failure(item, exc, bound)
            return
        bound.info("delivery handled", outcome=status.value)

    async def _record_failure(self, item: InboxItem, exc: Exception, bound: Any) -> None:
        attempt = item.attempts + 1
        permanent = isinstance(exc, MalformedDelivery | json.JSONDecodeError)
        now = self.clock()
        retry_at = None
        if not permanent and attempt < self.max_attempts:
            retry_at = now + self.retry_delay(attempt)
        error = f"{type(exc).__name__}: {exc}"
        async with self.sessions.begin() as session:
            recorded = await inbox.fail(
                session, item=item, owner=self.owner, error=error, now=now, retry_at=retry_at
            )
        if not recorded:
            bound.warning("delivery failed after its lease was lost", error=error)
            return
        if self.metrics is not None:
            self.metrics.inbox_failures.labels(item.event).inc()
            if retry_at is None:
                self.metrics.dead_letters.labels("inbox").inc()
        if retry_at is None:
            bound.error("delivery dead-lettered", attempts=attempt, error=error)
        else:
            bound.warning(
                "delivery failed; will retry",
                attempts=attempt,
                error=error,
                retry_at=retry_at.isoformat(),
            )
