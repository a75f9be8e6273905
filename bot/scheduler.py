"""The scheduler: every `DEPLOYBOT_TICK_SECONDS`, claim the verifying rollouts whose health
check is due, probe them, and feed each result to the pipeline; and remind holders of locks
that expire within the hour (announcing those that expired), once per lock by outbox key.

APScheduler only ticks; claims are leases in the database, so any number of replicas can
tick side by side and a dead replica's rollouts are picked up when its lease ends.
APScheduler's job store stays in memory and is never shared between processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.checks import required_verdict
from bot.github.context import github_last_good
from bot.pipeline import locks as lock_rules
from bot.pipeline import queue as deploy_queue
from bot.pipeline.config import Pipeline, PipelineError
from bot.pipeline.models import Evidence
from bot.worker import LeaseLost
from integrations.github_app import (
    GitHubApp,
    GitHubError,
    GitHubNotFound,
    GitHubValidationFailed,
    InstallationClient,
)
from integrations.health import HealthProbe
from storage import installations, leases, releases
from storage import locks as lock_rows
from storage.models import Release as ReleaseRow
from storage.models import Rollout as RolloutRow
from storage.models import utcnow

log = structlog.get_logger(__name__)


class Scheduler:
    """Ticks on an `AsyncIOScheduler`; `tick()` is one pass and can be called directly."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        probe: HealthProbe,
        github: GitHubApp,
        owner: str,
        tick_seconds: float,
        on_change: Callable[[], None] | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 50,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.probe = probe
        self.github = github
        self.owner = owner
        self.tick_seconds = tick_seconds
        self.on_change = on_change
        self.lease = lease
        self.batch = batch
        self.clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._ticking = asyncio.Lock()
        self._stopping = False

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.tick_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=self.clock(),
        )
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop ticking and let a tick in flight finish (its probes are bounded by timeouts).

        APScheduler's shutdown cancels a running job, so the tick is waited for first."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.pause()
        async with self._ticking:
            pass
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def tick(self) -> int:
        """Probe every due rollout once; returns how many were probed."""
        if self._stopping:
            return 0
        async with self._ticking:
            return await self._tick()

    async def _tick(self) -> int:
        await self._remind_locks()
        await self._start_queues()
        try:
            async with self.sessions.begin() as session:
                due = await releases.claim_due_probes(
                    session,
                    owner=self.owner,
                    now=self.clock(),
                    lease=self.lease,
                    limit=self.batch,
                )
            # Due times count from the tick, not from when each probe returned, so an
            # `interval` equal to the tick is kept instead of slipping to every other tick.
            started = self.clock()
            await asyncio.gather(*(self._probe(row, started) for row in due))
        except Exception:
            log.exception("scheduler tick failed")
            return 0
        return len(due)

    async def _remind_locks(self) -> None:
        """Enqueue the lock reminders and expiry notices due now. Their keys name the lock,
        so every tick (and every replica) may ask again: the outbox keeps the first."""
        try:
            now = self.clock()
            ahead = lock_rules.REMINDER_AHEAD
            async with self.sessions.begin() as session:
                found = await lock_rows.expiring_between(
                    session, start=now - ahead, end=now + ahead
                )
                added = [
                    await releases.enqueue(session, notice)
                    for notice in lock_rules.notices(found, now)
                ]
        except Exception:
            log.exception("lock reminders failed")
            return
        if any(added) and self.on_change is not None:
            self.on_change()

    async def _start_queues(self) -> None:
        """Start queued requests whose environment is free, oldest first in each. A request
        still waiting for its checks lets those behind it go; the first that starts holds
        the environment, so the rest of that queue waits for the next tick."""
        try:
            now = self.clock()
            async with self.sessions() as session:
                waiting = await releases.queued(session, now=now, limit=self.batch)
            done: set[tuple[str, str]] = set()
            for row in waiting:
                place = (row.repository, row.environment)
                if place not in done and await self._start(row, now):
                    done.add(place)
        except Exception:
            log.exception("starting queued deploys failed")

    async def _start(self, row: RolloutRow, now: datetime) -> bool:
        """Try one queued request; True when its environment is taken now (or was)."""
        assert row.id is not None
        async with self.sessions() as session:
            target = await releases.environment_history(
                session,
                repository=row.repository,
                environment=row.environment,
                now=now,
                before=row.id,
            )
            (value,) = await releases.values(session, [row])
            release = await releases.get_release(session, release_id=row.release_id)
            since = await releases.succeeded_since(
                session,
                repository=row.repository,
                environment=row.environment,
                since=row.updated_at,  # both wall-clock times, written when saved
            )
            installation_id = await installations.installation_for(
                session, full_name=row.repository
            )
        if target.active is not None:
            return True
        if release is None:
            return False
        if not deploy_queue.ready(value, target):
            await self._postpone(row.id, now)  # a lock holds it; unlocking wakes it
            return False
        superseded_by, checks = None, None
        if installation_id is not None:
            client = self.github.installation(installation_id)
            try:
                superseded_by = await _superseding(client, row, since)
                if superseded_by is None:
                    checks = await required_verdict(
                        client,
                        pipeline=_pipeline(release),
                        environment=row.environment,
                        repository=row.repository,
                        sha=row.commit_sha,
                    )
            except (GitHubNotFound, GitHubValidationFailed) as exc:
                # No retry changes this answer: waiting would hold the queue up for ever.
                reason = f"GitHub cannot say whether its checks are green ({exc})."
                async with self.sessions.begin() as session:
                    await conductor.cancel_queued(
                        session, rollout_id=row.id, reason=reason, now=now
                    )
                if self.on_change is not None:
                    self.on_change()
                return False
            except GitHubError as exc:
                log.warning("could not look up a queued deploy", rollout=row.id, error=str(exc))
                await self._postpone(row.id, now)
                return False
        async with self.sessions.begin() as session:
            outcome = await conductor.start_queued(
                session, rollout_id=row.id, now=now, checks=checks, superseded_by=superseded_by
            )
        if outcome.effects and self.on_change is not None:
            self.on_change()
        return any(rollout.status.active for rollout in outcome.rollouts)

    async def _postpone(self, rollout_id: int, now: datetime) -> None:
        async with self.sessions.begin() as session:
            await releases.postpone_check(
                session, rollout_id=rollout_id, until=now + conductor.RECHECK
            )

    async def _probe(self, row: RolloutRow, started: datetime) -> None:
        assert row.id is not None
        async with self.sessions() as session:
            release = await releases.get_release(session, release_id=row.release_id)
        try:
            pipeline = conductor.pipeline_of(release) if release is not None else None
        except PipelineError:
            pipeline = None
        env = pipeline.environment(row.environment) if pipeline is not None else None
        health = env.health if env is not None else None
        checks: tuple[tuple[bool, str], ...] = ()
        if health is None:
            result_healthy, detail = True, "no health checks configured"
        else:
            result = await self.probe.check(
                str(health.url) if health.url else None, health.prometheus
            )
            result_healthy, detail = result.healthy, result.detail
            # Each check's own line (`error_ratio = 0.031 > max 0.02`), for the thread.
            checks = tuple((check.healthy, check.detail) for check in result.checks)
        github_good_sha = None
        if health is not None and not result_healthy and row.failure_streak + 1 >= health.failures:
            github_good_sha = await self._github_good_sha(row)
        async with self.sessions.begin() as session:
            outcome = await conductor.probed(
                session,
                rollout_id=row.id,
                evidence=Evidence(result_healthy, detail, started, checks),
                now=started,
                github_good_sha=github_good_sha,
            )
            if not await leases.release(session, table=RolloutRow, row_id=row.id, owner=self.owner):
                raise LeaseLost  # another replica took it over: undo this probe's outcome
        log.info(
            "probed",
            rollout=row.id,
            environment=row.environment,
            healthy=result_healthy,
            detail=detail,
        )
        if outcome.effects and self.on_change is not None:
            self.on_change()

    async def _github_good_sha(self, row: RolloutRow) -> str | None:
        """This probe fails the rollout: if our records know no commit to roll back to, ask
        GitHub's deployment statuses (before the transaction; failing to ask is no answer)."""
        async with self.sessions() as session:
            known = await releases.previous_good_sha(
                session,
                repository=row.repository,
                environment=row.environment,
                other_than=row.commit_sha,
            )
            installation_id = await installations.installation_for(
                session, full_name=row.repository
            )
        if known is not None or installation_id is None:
            return None
        try:
            return await github_last_good(
                self.github.installation(installation_id),
                repository=row.repository,
                environment=row.environment,
                other_than=row.commit_sha,
            )
        except GitHubError as exc:
            log.warning("could not ask GitHub for a rollback target", error=str(exc))
            return None


async def _superseding(
    client: InstallationClient, row: RolloutRow, since: str | None
) -> str | None:
    """`since`, the commit that succeeded in the environment after the request was queued,
    when it contains the queued commit (GitHub's compare: `ahead` or `identical`)."""
    if since is None:
        return None
    if since == row.commit_sha:
        return since
    owner, name = row.repository.split("/", 1)
    try:
        status = await client.compare(owner=owner, repo=name, base=row.commit_sha, head=since)
    except (GitHubNotFound, GitHubValidationFailed):
        return None  # one of them is gone (a force-push): nothing says it is contained
    return since if status in {"ahead", "identical"} else None


def _pipeline(release: ReleaseRow) -> Pipeline | PipelineError:
    try:
        return conductor.pipeline_of(release)
    except PipelineError as error:
        return error
