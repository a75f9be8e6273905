"""The scheduler: every `DEPLOYBOT_TICK_SECONDS`, claim the verifying rollouts whose health
check is due, probe them, and feed each result to the pipeline; start queued requests whose
environment is free; and remind holders of locks that expire within the hour (announcing
those that expired), once per lock by outbox key.

APScheduler only ticks; claims are leases in the database, so any number of replicas can
tick side by side and a dead replica's rollouts are picked up when its lease ends.
APScheduler's job store stays in memory and is never shared between processes.

A tick probes thousands of rollouts with a fixed number of statements: one claims them all,
one reads their releases, and one saves every probe that only keeps its rollout verifying
(the pure core decides that, in memory). Only the probes that decide something (a verdict,
a canary step, a rollback, a message) are saved one by one, by `conductor.probed`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.checks import required_verdict
from bot.github.context import github_last_good
from bot.pipeline import locks as lock_rules
from bot.pipeline import queue as deploy_queue
from bot.pipeline.config import Pipeline, PipelineError, parse_pipeline
from bot.pipeline.machine import Release
from bot.pipeline.models import Evidence, Rollout
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
    """Ticks on an `AsyncIOScheduler`; `tick()` is one pass and can be called directly.

    `batch`: the most due rollouts one tick claims; `concurrency`: the probes in flight at
    once; `queue_batch`: the most queued requests one tick looks at (each needs GitHub).
    """

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
        batch: int = 20_000,
        concurrency: int = 100,
        queue_batch: int = 50,
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
        self.concurrency = concurrency
        self.queue_batch = queue_batch
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
            return await self._probe_due()
        except Exception:
            log.exception("scheduler tick failed")
            return 0

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
        the environment, so the rest of that queue waits for the next tick.

        Unlike probes, requests are looked at one by one: each asks GitHub (did a newer
        commit that contains it succeed? are its checks green?) and is then decided under
        its row's lock, so its cost is per request by nature. It is bounded instead: at
        most `queue_batch` a tick, only in environments nothing holds, and one that cannot
        start yet waits a minute (`conductor.RECHECK`) unless a lock release or a finished
        check wakes it. With no request queued this is one query, however many rollouts
        are verifying."""
        try:
            now = self.clock()
            async with self.sessions() as session:
                waiting = await releases.queued(session, now=now, limit=self.queue_batch)
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

    async def _probe_due(self) -> int:
        """Claim the due rollouts, probe them, save what each probe decided; returns how
        many were probed. The statements sent do not grow with the rollouts, save one
        transaction for each probe that decides something."""
        now = self.clock()
        until = now + self.lease
        # Probes not started by then are left for the next tick: the claim must still hold
        # when their results are written.
        deadline = time.monotonic() + self.lease.total_seconds() / 2
        async with self.sessions.begin() as session:
            due = await releases.claim_due_probes(
                session, owner=self.owner, now=now, lease=self.lease, limit=self.batch
            )
            if not due:
                return 0
            found = await releases.claimed_releases(session, owner=self.owner, until=until)
        # Due times count from the tick, not from when each probe returned, so an
        # `interval` equal to the tick is kept instead of slipping to every other tick.
        started = self.clock()
        # Each release once: its rollouts (an environment each) share its value and file.
        about = {
            release_id: (releases.release_value(row), _pipeline_or_error(row.pipeline))
            for release_id, row in found.items()
        }
        checks = [_Check(row, about.get(row.release_id)) for row in _records(due)]
        del due, found
        await _each(checks, self.concurrency, lambda check: self._run(check, started, deadline))
        saved_at = utcnow()  # as a decision's save stamps `updated_at`
        quiet: list[dict[str, Any]] = []
        quiet_checks: list[_Check] = []
        loud: list[_Check] = []
        unprobed: list[int] = []
        for check in checks:
            if check.failed:
                continue  # its lease runs out, then it is probed again
            if check.evidence is None:
                unprobed.append(check.row.id)
                continue
            after = check.quiet(started)
            if after is None:
                loud.append(check)
                continue
            quiet.append(releases.probe_progress(check.row, after, now=saved_at))
            quiet_checks.append(check)
            if not check.evidence.healthy:
                _log_probe(check.row, check.evidence)
        if quiet:
            async with self.sessions.begin() as session:
                await releases.save_probe_progress(session, owner=self.owner, progress=quiet)
                held = await releases.held_probes(session, owner=self.owner, until=until)
            # Still held: the rollout changed since it was claimed (paused, or a deployment
            # status came), so this probe is decided again under the row's lock.
            loud += [check for check in quiet_checks if check.row.id in held]
        await _each(loud, _DECIDING, lambda check: self._decide(check, started))
        if unprobed:
            async with self.sessions.begin() as session:
                await releases.unclaim_probes(session, owner=self.owner, rollout_ids=unprobed)
        probed = sum(check.evidence is not None for check in checks)
        log.info("probed", rollouts=probed, decided=len(loud), left=len(unprobed))
        return probed

    async def _run(self, check: _Check, started: datetime, deadline: float) -> None:
        if self._stopping or time.monotonic() > deadline:
            return
        try:
            await check.run(self.probe, started)
        except Exception:
            # A bug, not the service's health: log it and leave the rollout leased.
            log.exception("probe failed", rollout=check.row.id)
            check.failed = True

    async def _decide(self, check: _Check, started: datetime) -> None:
        """Decide, save and audit one probe under its row's lock (`conductor.probed`)."""
        row, evidence = check.row, check.evidence
        assert evidence is not None
        try:
            github_good_sha = await self._github_good_sha(row) if check.fails else None
            async with self.sessions.begin() as session:
                outcome = await conductor.probed(
                    session,
                    rollout_id=row.id,
                    evidence=evidence,
                    now=started,
                    github_good_sha=github_good_sha,
                )
                if not await leases.release(
                    session, table=RolloutRow, row_id=row.id, owner=self.owner
                ):
                    raise LeaseLost  # another replica took it over: undo this probe's outcome
        except LeaseLost:
            log.warning("probe dropped: another replica took the rollout", rollout=row.id)
            return
        except Exception:
            log.exception("saving a probe failed", rollout=row.id)
            return
        _log_probe(row, evidence)
        if outcome.effects and self.on_change is not None:
            self.on_change()

    async def _github_good_sha(self, row: Any) -> str | None:
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


# Probes that decide something are saved this many at a time (each in its own transaction).
_DECIDING = 8


async def _each(items: list[Any], limit: int, work: Callable[[Any], Awaitable[None]]) -> None:
    """`work` on every item, at most `limit` at a time (a few tasks, not one per item)."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))


def _log_probe(row: Any, evidence: Evidence) -> None:
    log.info(
        "probed",
        rollout=row.id,
        environment=row.environment,
        healthy=evidence.healthy,
        detail=evidence.detail,
    )


class _Check:
    """One claimed rollout through a tick: what to probe, what the probe saw, and what that
    decides. `about` is its release's value and pipeline, None when the release was not
    found."""

    __slots__ = ("evidence", "failed", "health", "pipeline", "release", "row")

    def __init__(self, row: Any, about: tuple[Release, Pipeline | PipelineError] | None) -> None:
        self.row = row
        self.release, self.pipeline = about if about is not None else (None, None)
        env = (
            self.pipeline.environment(row.environment)
            if isinstance(self.pipeline, Pipeline)
            else None
        )
        self.health = env.health if env is not None else None
        self.evidence: Evidence | None = None
        self.failed = False

    async def run(self, probe: HealthProbe, started: datetime) -> None:
        """Probe the rollout (nothing to check is healthy, as the core expects)."""
        health = self.health
        if health is None:
            self.evidence = Evidence(True, "no health checks configured", started)
            return
        result = await probe.check(str(health.url) if health.url else None, health.prometheus)
        # Each check's own line (`error_ratio = 0.031 > max 0.02`), for the thread.
        checks = tuple((check.healthy, check.detail) for check in result.checks)
        self.evidence = Evidence(result.healthy, result.detail, started, checks)

    @property
    def fails(self) -> bool:
        """This probe may fail the rollout: worth asking GitHub for a rollback target."""
        health, evidence = self.health, self.evidence
        return (
            health is not None
            and evidence is not None
            and not evidence.healthy
            and self.row.failure_streak + 1 >= health.failures
        )

    def quiet(self, now: datetime) -> Rollout | None:
        """The rollout as this probe leaves it, if that is all it does (`quiet_probe`)."""
        if self.release is None or self.pipeline is None or self.evidence is None:
            return None
        return conductor.quiet_probe(
            pipeline=self.pipeline,
            release=self.release,
            rollout=releases.probe_value(self.row),
            evidence=self.evidence,
            now=now,
        )


def _records(rows: Sequence[Any]) -> list[Any]:
    """Claimed rows as named tuples: a probe reads some thirty columns of its rollout, and
    reading an attribute of a SQLAlchemy Row is a lookup in Python (a third of a
    microsecond), of a named tuple one in C. Holding only strings, numbers and times, they
    are also left alone by the garbage collector once it has seen them."""
    if not rows:
        return []
    make = _record_type(tuple(rows[0]._fields))._make
    return [make(row) for row in rows]


@functools.lru_cache(maxsize=4)
def _record_type(fields: tuple[str, ...]) -> Any:
    return collections.namedtuple("Claimed", fields, rename=True)


def _pipeline_or_error(text: str) -> Pipeline | PipelineError:
    try:
        return parse_pipeline(text)
    except PipelineError as error:
        return error
