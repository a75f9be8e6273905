"""The reconciler of missed GitHub deliveries: GitHub does not retry a webhook that failed.

Every ten minutes (the first run a minute after start-up, when missed deliveries are most
likely) it reads the App's deliveries of the past three days (`GET /app/hook/deliveries`,
newest first, paging until the deliveries are older), groups the attempts by guid (a
redelivery keeps the `X-GitHub-Delivery` guid of the original), and for each guid whose
newest attempt failed (an error status, or no answer) asks GitHub to deliver it again
(`POST /app/hook/deliveries/{id}/attempts`), unless:

- the inbox has the guid: deploybot stored it and only the answer was lost (a timeout);
- that attempt was asked for before, by an earlier run or another replica;
- a redelivery of the guid was asked for recently: each further one waits twice as long
  as the one before (10 minutes, 20, 40, ...), so an endpoint that keeps failing is asked
  about a few times a day, not every run.

Replicas need no lease for the run: each ask is claimed by inserting its attempt's row
(`storage.redeliveries`), so an attempt is asked for once however many replicas run;
they may all list, which only reads. `deploybot reconcile [--dry-run]` runs one pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.github.webhook import SOURCE
from bot.metrics import Metrics
from integrations.github_app import (
    GitHubApp,
    GitHubError,
    GitHubPermissionDenied,
    GitHubRateLimited,
    HookDelivery,
)
from storage import redeliveries
from storage.models import utcnow
from storage.redeliveries import Asked

log = structlog.get_logger(__name__)

# GitHub redelivers deliveries of the past three days only.
WINDOW = timedelta(days=3)
INTERVAL = timedelta(minutes=10)
FIRST_RUN_AFTER = timedelta(minutes=1)
# A further redelivery of a guid waits BACKOFF * 2**(asks so far - 1) after the last ask.
BACKOFF = timedelta(minutes=10)
# Long enough for one ask (its timeout is 10 s); a claim older than this was abandoned.
CLAIM_LEASE = timedelta(minutes=5)
PER_PAGE = 100
# 20,000 attempts: a run stays bounded even for an App that GitHub floods.
MAX_PAGES = 200


@dataclass
class Report:
    """One run: `listed` attempts of the window; of the `failed` deliveries (by guid, newest
    attempt failed) how many the inbox had (`stored`), were asked for before
    (`asked_before`), and were asked for now (`redelivered`; on a dry run, would be)."""

    dry_run: bool
    listed: int = 0
    failed: int = 0
    stored: int = 0
    asked_before: int = 0
    redelivered: list[HookDelivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def newest_attempts(attempts: Iterable[HookDelivery]) -> dict[str, HookDelivery]:
    """The newest attempt of each guid."""
    newest: dict[str, HookDelivery] = {}
    for attempt in attempts:
        known = newest.get(attempt.guid)
        if known is None or (attempt.delivered_at, attempt.id) > (known.delivered_at, known.id):
            newest[attempt.guid] = attempt
    return newest


def asked_before(attempt: HookDelivery, asked: Asked | None, now: datetime) -> bool:
    """Whether asking for `attempt` now would repeat an ask: that very attempt was claimed,
    or a redelivery of its guid was asked for less than its backoff ago."""
    if asked is None:
        return False
    if attempt.id in asked.delivery_ids:
        return True
    if asked.requests == 0 or asked.last_requested_at is None:
        return False
    return now < asked.last_requested_at + BACKOFF * 2 ** (asked.requests - 1)


class Reconciler:
    """Runs `run_once` on an `AsyncIOScheduler` every `interval`; `start`/`stop` with the app."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        owner: str,
        metrics: Metrics | None = None,
        interval: timedelta = INTERVAL,
        first_run_after: timedelta = FIRST_RUN_AFTER,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.github = github
        self.owner = owner
        self.metrics = metrics
        self.interval = interval
        self.first_run_after = first_run_after
        self.clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._running = asyncio.Lock()
        self._stopping = False

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(
            self._scheduled_run,
            "interval",
            seconds=self.interval.total_seconds(),
            max_instances=1,
            coalesce=True,
            next_run_time=self.clock() + self.first_run_after,
        )
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop the schedule; a run in flight stops before its next ask."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.pause()
        async with self._running:
            pass
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def _scheduled_run(self) -> None:
        try:
            await self.run_once()
        except Exception:  # the database, most likely: the next run tries again
            log.exception("reconciler run failed")

    async def run_once(self, *, dry_run: bool = False) -> Report:
        """One pass: list, decide, ask (unless `dry_run`), count and log. GitHub's errors are
        in the report, never raised."""
        report = Report(dry_run=dry_run)
        if self._stopping:
            return report
        async with self._running:
            now = self.clock()
            attempts = await self._list(report, since=now - WINDOW)
            report.listed = len(attempts)
            failed = {
                guid: attempt
                for guid, attempt in newest_attempts(attempts).items()
                if attempt.failed
            }
            report.failed = len(failed)
            async with self.sessions() as session:
                stored = await redeliveries.stored_guids(session, source=SOURCE, guids=failed)
                asked = await redeliveries.asked(session, guids=failed)
            candidates = []
            for guid, attempt in sorted(
                failed.items(), key=lambda item: (item[1].delivered_at, item[1].id)
            ):
                if guid in stored:
                    report.stored += 1
                elif asked_before(attempt, asked.get(guid), now):
                    report.asked_before += 1
                else:
                    candidates.append(attempt)
            if dry_run:
                report.redelivered = candidates
            else:
                await self._redeliver(report, candidates)
                async with self.sessions.begin() as session:
                    await redeliveries.forget_before(session, before=now - WINDOW - INTERVAL)
        self._count(report)
        log.info(
            "reconciler run",
            dry_run=dry_run,
            listed=report.listed,
            failed=report.failed,
            stored=report.stored,
            asked_before=report.asked_before,
            redelivered=len(report.redelivered),
            errors=len(report.errors),
        )
        return report

    async def _list(self, report: Report, *, since: datetime) -> list[HookDelivery]:
        """The attempts delivered since `since`. A listing that fails part-way keeps the pages
        it read: they are the newest, so each guid in them has its newest attempt there."""
        attempts: list[HookDelivery] = []
        cursor = None
        for _ in range(MAX_PAGES):
            if self._stopping:
                return attempts
            try:
                page = await self.github.list_hook_deliveries(cursor=cursor, per_page=PER_PAGE)
            except GitHubError as exc:
                log.warning("reconciler: listing deliveries failed", error=str(exc))
                report.errors.append(f"listing deliveries: {exc}")
                return attempts
            recent = [attempt for attempt in page.deliveries if attempt.delivered_at >= since]
            attempts.extend(recent)
            if len(recent) < len(page.deliveries) or page.next_cursor is None:
                return attempts
            cursor = page.next_cursor
        log.warning(
            "reconciler: stopped listing", pages=MAX_PAGES, oldest=str(attempts[-1].delivered_at)
        )
        return attempts

    async def _redeliver(self, report: Report, candidates: list[HookDelivery]) -> None:
        for attempt in candidates:
            if self._stopping:
                return
            async with self.sessions.begin() as session:
                claimed = await redeliveries.claim(
                    session,
                    delivery_id=attempt.id,
                    guid=attempt.guid,
                    event=attempt.event,
                    action=attempt.action,
                    status_code=attempt.status_code,
                    delivered_at=attempt.delivered_at,
                    owner=self.owner,
                    now=self.clock(),
                    lease=CLAIM_LEASE,
                )
            if not claimed:  # another replica is asking for it right now
                report.asked_before += 1
                continue
            try:
                await self.github.redeliver(attempt.id)
            except GitHubError as exc:
                async with self.sessions.begin() as session:
                    await redeliveries.drop_claim(session, delivery_id=attempt.id, owner=self.owner)
                log.warning(
                    "reconciler: redelivery refused",
                    delivery=attempt.id,
                    guid=attempt.guid,
                    error=str(exc),
                )
                report.errors.append(f"redelivering {attempt.id} ({attempt.guid}): {exc}")
                if isinstance(exc, GitHubPermissionDenied | GitHubRateLimited):
                    return  # every other ask would be refused the same way
                continue
            async with self.sessions.begin() as session:
                await redeliveries.mark_requested(
                    session, delivery_id=attempt.id, owner=self.owner, now=self.clock()
                )
            report.redelivered.append(attempt)

    def _count(self, report: Report) -> None:
        if self.metrics is None or report.dry_run:
            return
        for result, count in (
            ("redelivered", len(report.redelivered)),
            ("stored", report.stored),
            ("asked_before", report.asked_before),
            ("error", len(report.errors)),
        ):
            self.metrics.reconciler.labels(result).inc(count)
