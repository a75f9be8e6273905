"""The deploy queue: requests that wait (`--queue`, `--wait`, automatic deploys) start in
the order they were asked, each when the rules let it. Pure.

A queued request is asked again, as its requester asked it, whenever it may be able to
start: what it waited for (a rollout, a lock, its checks) may be gone, and what it did not
wait for (a window, a freeze, an unknown environment) refuses it for good. A request whose
commit a newer one already contains, after that newer one succeeded there, is skipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.pipeline import freezes, machine
from bot.pipeline.checks import Verdict
from bot.pipeline.config import Pipeline
from bot.pipeline.effects import RefreshBoard, ThreadReply
from bot.pipeline.machine import Outcome, Release
from bot.pipeline.models import EnvironmentHistory, Person, Rollout, Status


def ready(rollout: Rollout, target: EnvironmentHistory) -> bool:
    """Whether a queued request could start now without anyone's say: the environment is
    free and not locked against it. (Its checks, window and the rest are asked on start.)"""
    if rollout.status is not Status.QUEUED or target.active is not None:
        return False
    holder = target.lock_holder
    return holder is None or rollout.forced or holder.same_as(rollout.requested_by)


def start(
    *,
    pipeline: Pipeline,
    release: Release,
    queued: Rollout,
    target: EnvironmentHistory,
    succeeded_here: frozenset[str],
    now: datetime,
    checks: Verdict | None = None,
    freeze: freezes.Freeze | None = None,
    superseded_by: str | None = None,
) -> Outcome:
    """Try to start a queued request. `target` is the environment as it is now, with
    `waiting` counting the ready requests queued before this one. `superseded_by` names a
    newer commit that contains this one and succeeded in the environment since it was
    queued: the request is skipped. Returns no change while it must still wait."""
    if queued.status is not Status.QUEUED:
        return Outcome()
    where = f"`{queued.environment}`"
    if superseded_by is not None:
        text = (
            f"Skipped the queued deploy of {queued.commit_sha[:7]} to {where}: "
            f"{superseded_by[:7]}, which contains it, succeeded there since."
        )
        note = f"skipped: {superseded_by[:7]} succeeded there and contains it"
        return _ended(release, replace(queued, status=Status.SKIPPED, note=note), text)
    if release.commit_sha != queued.commit_sha:
        return head_moved(release=release, rollout=queued)
    asked = machine.request_deploy(
        pipeline=pipeline,
        release=release,
        environment=queued.environment,
        requester=queued.requested_by,
        target=target,
        succeeded_here=succeeded_here,
        rollout_id=queued.id,
        now=now,
        force=queued.forced,
        checks=checks,
        freeze=freeze,
        queue=True,
        wait=queued.wait_checks,
    )
    if asked.refused:
        text = f"Cancelled the queued deploy of {queued.commit_sha[:7]} to {where}: {asked.refusal}"
        note = asked.refusal
        return _ended(release, replace(queued, status=Status.CANCELLED, note=note), text)
    (started,) = asked.rollouts
    if started.status is Status.QUEUED:
        return Outcome()  # still waiting; it said what for when it was queued
    return replace(asked, rollouts=(replace(started, created_at=queued.created_at),))


def for_checks(
    *, release: Release, environment: str, requester: Person, rollout_id: int, now: datetime
) -> Outcome:
    """An automatic deploy where checks are required: it waits in the queue until the
    scheduler has seen its commit's checks, then starts like any queued request."""
    rollout = machine.queued_rollout(
        release, environment, requester, rollout_id, now, ["its checks"], wait=True
    )
    return Outcome(rollouts=(rollout,), effects=(RefreshBoard(release.id, f"{rollout_id}:queued"),))


def head_moved(*, release: Release, rollout: Rollout) -> Outcome:
    """The pull request moved on: a request queued for an older commit is cancelled."""
    if rollout.status is not Status.QUEUED or rollout.commit_sha == release.commit_sha:
        return Outcome()
    text = (
        f"Cancelled the queued deploy of {rollout.commit_sha[:7]} to `{rollout.environment}`: "
        f"the pull request moved on to {release.short_sha}. Ask again to deploy that."
    )
    note = f"the pull request moved to {release.short_sha}"
    return _ended(release, replace(rollout, status=Status.CANCELLED, note=note), text)


def cancel(*, release: Release, rollout: Rollout, reason: str) -> Outcome:
    """Cancel a queued request that can never start, with the reason in its thread."""
    if rollout.status is not Status.QUEUED:
        return Outcome()
    text = (
        f"Cancelled the queued deploy of {rollout.commit_sha[:7]} to `{rollout.environment}`: "
        f"{reason}"
    )
    return _ended(release, replace(rollout, status=Status.CANCELLED, note=reason), text)


def _ended(release: Release, rollout: Rollout, text: str) -> Outcome:
    cause = f"{rollout.id}:{rollout.status.value}"
    return Outcome(
        rollouts=(rollout,),
        effects=(ThreadReply(release.id, cause, text), RefreshBoard(release.id, cause)),
    )
