"""Running the pipeline core against the database: load the state a decision needs, decide,
save the outcome (rollouts and effects) in the caller's transaction.

GitHub comments, Slack buttons and the scheduler all go through here, so a rule holds the
same whichever way a request arrives. Nothing here talks to GitHub or Slack: effects do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline import freezes, gates, locks, machine
from bot.pipeline import queue as deploy_queue
from bot.pipeline.checks import Verdict
from bot.pipeline.config import Checks, Pipeline, PipelineError, parse_pipeline
from bot.pipeline.effects import PullRequestComment, RefreshBoard, ThreadReply
from bot.pipeline.machine import Outcome
from bot.pipeline.models import Evidence, Person, Rollout, Status
from storage import audit, releases
from storage import freezes as freeze_rows
from storage import locks as lock_rows
from storage.models import Release as ReleaseRow
from storage.models import Rollout as RolloutRow

RECHECK = timedelta(minutes=1)
NO_ID = 0  # stands for "a new rollout's id" until one is really needed


async def _with_new_id(session: AsyncSession, decide: Callable[[int], Outcome]) -> Outcome:
    """Run a decision that may create a rollout, reserving an id only if it does: the core is
    pure, so deciding again with the real id gives the same outcome."""
    outcome = decide(NO_ID)
    if any(rollout.id == NO_ID for rollout in outcome.rollouts):
        outcome = decide(await releases.reserve_rollout_id(session))
    return outcome


def pipeline_of(release: ReleaseRow) -> Pipeline:
    """The release's pipeline as last read from the default branch (raises PipelineError);
    `parse_pipeline` remembers the files it parsed."""
    return parse_pipeline(release.pipeline)


async def deploy(
    session: AsyncSession,
    *,
    release: ReleaseRow,
    environment: str,
    requester: Person,
    now: datetime,
    force: bool = False,
    checks: Verdict | None = None,
    queue: bool = False,
    wait: bool = False,
    source: str,
) -> Outcome:
    """Ask for the release's head commit in `environment`; saves and returns the outcome.
    `checks`: the verdict on that commit's checks, looked up before the transaction when
    the environment requires them (see `bot.github.checks.required_verdict`). `queue` and
    `wait` (`--queue`, `--wait`) let the request wait in the queue instead of a refusal."""
    pipeline = pipeline_of(release)
    value = releases.release_value(release)
    env = pipeline.environment(environment)
    name = env.name if env is not None else environment
    target = await releases.environment_history(
        session, repository=release.repository, environment=name, now=now
    )
    succeeded = await releases.succeeded_environments(
        session, repository=release.repository, commit_sha=release.commit_sha
    )
    freeze = await freeze_rows.active(session, repository=release.repository, now=now)
    outcome = await _with_new_id(
        session,
        lambda new_id: machine.request_deploy(
            pipeline=pipeline,
            release=value,
            environment=environment,
            requester=requester,
            target=target,
            succeeded_here=succeeded,
            rollout_id=new_id,
            now=now,
            force=force,
            checks=checks,
            freeze=freeze,
            queue=queue,
            wait=wait,
        ),
    )
    asked = Asked(requester, source, "deploy", name, release.commit_sha)
    saved = await _save(session, release, outcome, asked)
    if force and not saved.refused:
        _audit_force(session, release, name, requester, freeze, saved, source)
    return saved


def _audit_force(
    session: AsyncSession,
    release: ReleaseRow,
    environment: str,
    requester: Person,
    freeze: freezes.Freeze | None,
    outcome: Outcome,
    source: str,
) -> None:
    """What a forced deploy went past goes in the audit log once it starts (a queued one
    is logged when it starts, not when it is queued): a freeze, and the other rules."""
    if not any(r.status.active for r in outcome.rollouts):
        return
    where = {
        "actor": requester.label,
        "source": source,
        "repository": release.repository,
        "environment": environment,
        "commit_sha": release.commit_sha,
    }
    if freeze is not None:
        detail = {
            "frozen_by": freeze.by.label,
            "until": freeze.until.isoformat(),
            "reason": freeze.reason,
        }
        audit.record(session, action="force-past-freeze", detail=detail, **where)
    if outcome.overrides:
        overrode = {"overrode": list(outcome.overrides)}
        audit.record(session, action="force", detail=overrode, **where)


@dataclass(frozen=True)
class Asked:
    """Who asked for a decision, from where (`slack`, `github`, `api`, `scheduler`), for
    what, about which environment and commit: the audit entry its outcome is saved with."""

    actor: Person
    source: str
    action: str
    environment: str | None = None
    commit_sha: str | None = None


DEPLOY_SYSTEM = Person(github="github")  # statuses come from whatever deploys


def _audit(session: AsyncSession, outcome: Outcome, asked: Asked, repository: str) -> None:
    """Record a request and what came of it: the rollouts it changed, or the refusal."""
    detail: dict[str, Any] = {}
    if outcome.refusal is not None:
        detail["refused"] = outcome.refusal
    if outcome.rollouts:
        detail["rollouts"] = [
            {"id": r.id, "kind": r.kind.value, "status": r.status.value, "commit": r.commit_sha}
            for r in outcome.rollouts
        ]
    audit.record(
        session,
        actor=asked.actor.label,
        source=asked.source,
        action=asked.action,
        repository=repository,
        environment=asked.environment,
        commit_sha=asked.commit_sha,
        detail=detail,
    )


async def decide(
    session: AsyncSession,
    *,
    release: ReleaseRow,
    rollout_id: int,
    person: Person,
    approve: bool,
    authorised: bool,
    now: datetime,
    reason: str | None = None,
    source: str,
) -> Outcome:
    """An approver's decision on a rollout, serialised with any other decision on it."""
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return Outcome(refusal="That deploy request no longer exists.")
    _, rollout = found
    outcome = machine.decide(
        pipeline=pipeline_of(release),
        release=releases.release_value(release),
        rollout=rollout,
        person=person,
        approve=approve,
        authorised=authorised,
        now=now,
        reason=reason,
    )
    action = "approve" if approve else "reject"
    asked = Asked(person, source, action, rollout.environment, rollout.commit_sha)
    return await _save(session, release, outcome, asked)


async def awaiting_approval(
    session: AsyncSession, *, release: ReleaseRow, environment: str
) -> Rollout | None:
    """The release's rollout in `environment` that waits for approval, if any."""
    assert release.id is not None
    for rollout in reversed(await releases.rollouts_of_release(session, release_id=release.id)):
        if (
            rollout.environment.lower() == environment.lower()
            and rollout.status is Status.AWAITING_APPROVAL
        ):
            return rollout
    return None


async def report(
    session: AsyncSession,
    *,
    deployment_id: int,
    state: str,
    now: datetime,
    description: str | None = None,
    github_good_sha: str | None = None,
    named_rollout: int | None = None,
    named_step: int | None = None,
    commit_sha: str | None = None,
) -> Outcome | None:
    """A deployment status from the deploy system; None for a deployment we did not create.
    `github_good_sha` is the rollback target GitHub knows of, used when our records have none.
    """
    found = await releases.rollout_for_deployment(session, deployment_id=deployment_id)
    if found is None and named_rollout is not None:
        found = await _adopt(session, deployment_id, named_rollout, named_step, commit_sha)
    if found is None:
        return None
    row, rollout = found
    release, last_good = await _surroundings(session, row, rollout, github_good_sha)
    replaced = None
    if rollout.replaces is not None:
        replaced_found = await releases.get_rollout(session, rollout_id=rollout.replaces)
        replaced = replaced_found[1] if replaced_found else None
    outcome = await _with_new_id(
        session,
        lambda new_id: machine.deployment_reported(
            pipeline=pipeline_of(release),
            release=releases.release_value(release),
            rollout=rollout,
            state=state,
            now=now,
            last_good_sha=last_good,
            rollback_id=new_id,
            replaced=replaced,
            description=description,
        ),
    )
    asked = Asked(
        DEPLOY_SYSTEM, "github", f"deployment {state}", rollout.environment, rollout.commit_sha
    )
    await _save(session, release, outcome, asked, request=False)
    await _promote_on_success(session, release, outcome, now, "github")
    return outcome


async def probed(
    session: AsyncSession,
    *,
    rollout_id: int,
    evidence: Evidence,
    now: datetime,
    github_good_sha: str | None = None,
) -> Outcome:
    """A health probe's result for a verifying rollout (`github_good_sha` as in `report`),
    decided under the row's lock, saved and audited."""
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return Outcome()
    row, rollout = found
    release, last_good = await _surroundings(session, row, rollout, github_good_sha)
    try:
        pipeline = pipeline_of(release)
    except PipelineError:
        # Broken pipeline file: keep verifying, but only look again in a minute.
        await releases.postpone_check(session, rollout_id=rollout_id, until=now + RECHECK)
        return Outcome()
    outcome = await _with_new_id(
        session,
        lambda new_id: machine.probed(
            pipeline=pipeline,
            release=releases.release_value(release),
            rollout=rollout,
            evidence=evidence,
            now=now,
            last_good_sha=last_good,
            rollback_id=new_id,
        ),
    )
    # A probe that only keeps a rollout verifying is no decision worth an entry.
    verdict = any(r.status is not Status.VERIFYING for r in outcome.rollouts)
    asked = Asked(
        machine.BOT, "scheduler", "health verdict", rollout.environment, rollout.commit_sha
    )
    await _save(session, release, outcome, asked if verdict else None, request=False)
    if any(r.status is Status.SUCCESS for r in outcome.rollouts):  # else nothing follows
        await _promote_on_success(session, release, outcome, now, "scheduler")
    return outcome


# What a probe that only keeps a rollout verifying leaves as it was (`quiet_probe`).
_FIXED = operator.attrgetter(
    *(f.name for f in dataclasses.fields(Rollout) if f.name not in releases.PROBE_PROGRESS)
)


def quiet_probe(
    *,
    pipeline: Pipeline | PipelineError,
    release: machine.Release,
    rollout: Rollout,
    evidence: Evidence,
    now: datetime,
) -> Rollout | None:
    """The rollout as a probe leaves it when all the probe does is keep it verifying: its
    timers and failure streak move on, nothing else changes, no effect is sent and there is
    nothing to audit, so it may be saved with many others at once
    (`releases.save_probe_progress`). None when the probe decides something (a verdict, a
    canary step, a rollback, a message in the thread): `probed` decides it again under the
    row's lock, then saves and audits it. Pure; `rollout` need not carry its decisions."""
    if isinstance(pipeline, PipelineError):
        return dataclasses.replace(rollout, next_check_at=now + RECHECK)  # as `probed` does
    # A rollback's id and the commit to go back to only matter to a failure: no quiet one.
    outcome = machine.probed(
        pipeline=pipeline,
        release=release,
        rollout=rollout,
        evidence=evidence,
        now=now,
        last_good_sha=None,
        rollback_id=NO_ID,
    )
    if outcome.effects or outcome.refused or len(outcome.rollouts) > 1:
        return None
    if not outcome.rollouts:
        return rollout  # paused, or no longer verifying: nothing to save
    (after,) = outcome.rollouts
    if after.status is not Status.VERIFYING:
        return None
    return after if _FIXED(after) == _FIXED(rollout) else None


Steer = Literal["pause", "resume", "promote"]


async def steer(
    session: AsyncSession,
    *,
    action: Steer,
    person: Person,
    now: datetime,
    source: str,
    rollout_id: int | None = None,
    repository: str | None = None,
    environment: str | None = None,
) -> Outcome:
    """Pause, resume or promote (a held canary step) a running rollout: the one a button
    names (`rollout_id`), or the one holding `environment` (a command)."""
    if rollout_id is None:
        assert repository is not None and environment is not None
        rollout_id = await releases.active_rollout_id(
            session, repository=repository, environment=environment
        )
        if rollout_id is None:
            refused = Outcome(refusal=f"Nothing is being deployed to `{environment}` right now.")
            _audit(session, refused, Asked(person, source, action, environment), repository)
            return refused
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return Outcome(refusal="That rollout no longer exists.")
    row, rollout = found
    release = await releases.get_release(session, release_id=row.release_id)
    assert release is not None
    value = releases.release_value(release)
    if action == "pause":
        outcome = machine.pause(release=value, rollout=rollout, person=person, now=now)
    elif action == "resume":
        outcome = machine.resume(release=value, rollout=rollout, person=person, now=now)
    else:
        outcome = machine.promote_step(
            pipeline=pipeline_of(release), release=value, rollout=rollout, person=person, now=now
        )
    asked = Asked(person, source, action, rollout.environment, rollout.commit_sha)
    return await _save(session, release, outcome, asked, request=False)


async def _promote_on_success(
    session: AsyncSession, release: ReleaseRow, outcome: Outcome, now: datetime, source: str
) -> None:
    """After a success, deploy to the next environment if it is `auto: true`."""
    following = machine.promoted_on_success(
        pipeline_of(release), releases.release_value(release), outcome
    )
    if following is not None:
        await deploy_on_its_own(
            session, release=release, environment=following, now=now, source=source
        )


async def deploy_on_its_own(
    session: AsyncSession, *, release: ReleaseRow, environment: str, now: datetime, source: str
) -> Outcome:
    """An automatic deploy (`auto: true`), asked for by deploybot itself. It waits in the
    queue behind a lock or a busy environment, and, where checks are required, for the
    scheduler to see them green (GitHub is not asked inside a transaction); when a rule
    refuses it (a window, a freeze), the thread says why."""
    env = pipeline_of(release).environment(environment)
    if env is not None and env.checks is Checks.REQUIRED:
        queued = await _with_new_id(
            session,
            lambda new_id: deploy_queue.for_checks(
                release=releases.release_value(release),
                environment=env.name,
                requester=machine.BOT,
                rollout_id=new_id,
                now=now,
            ),
        )
        asked = Asked(machine.BOT, source, "deploy", env.name, release.commit_sha)
        return await _save(session, release, queued, asked, request=False)
    outcome = await deploy(
        session,
        release=release,
        environment=environment,
        requester=machine.BOT,
        now=now,
        queue=True,
        source=source,
    )
    if outcome.refused:
        held = machine.held_back(
            releases.release_value(release), environment, outcome.refusal or ""
        )
        await releases.save_outcome(session, release_id=release.id or 0, outcome=held)
    return outcome


async def _adopt(
    session: AsyncSession,
    deployment_id: int,
    rollout_id: int,
    step: int | None,
    commit_sha: str | None,
) -> tuple[RolloutRow, Rollout] | None:
    """A status that arrived before the dispatcher recorded the deployment's id: the payload
    names our rollout, so record the id now (if the rollout still has none, and the commit
    and canary step match: an earlier step's late status is not this step's) rather than
    lose the status."""
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return None
    row, _ = found
    if (
        row.github_deployment_id is not None
        or (commit_sha and commit_sha != row.commit_sha)
        or step != row.canary_step
    ):
        return None
    await releases.record_deployment(
        session, rollout_id=rollout_id, deployment_id=deployment_id, step=step
    )
    return await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)


async def _surroundings(
    session: AsyncSession, row: RolloutRow, rollout: Rollout, github_good_sha: str | None
) -> tuple[ReleaseRow, str | None]:
    """A rollout's release and the last other commit that succeeded in its environment: our
    own records first, else what GitHub's deployment statuses say."""
    release = await releases.get_release(session, release_id=row.release_id)
    assert release is not None
    last_good = await releases.previous_good_sha(
        session,
        repository=rollout.repository,
        environment=rollout.environment,
        other_than=rollout.commit_sha,
    )
    return release, last_good or github_good_sha


async def _save(
    session: AsyncSession,
    release: ReleaseRow,
    outcome: Outcome,
    asked: Asked | None = None,
    *,
    request: bool = True,
) -> Outcome:
    """Save an outcome, and with `asked` its audit entry when it changed or refused
    something. For a person's request (`request`), losing the race for the environment to
    another request is a refusal; anywhere else it is an error to retry."""
    assert release.id is not None
    saved = outcome
    if not request:
        await releases.save_outcome(session, release_id=release.id, outcome=outcome)
    else:
        try:
            async with session.begin_nested():
                await releases.save_outcome(session, release_id=release.id, outcome=outcome)
        except IntegrityError:
            # Another request took the environment between our read and our write: the
            # database's one-active-rollout rule decided, so this one is refused.
            saved = Outcome(refusal="The environment just became busy with another deploy.")
    if asked is not None and (saved.rollouts or saved.refused):
        _audit(session, saved, asked, release.repository)
    return saved


def refusal_comment(release: ReleaseRow, key: str, text: str) -> PullRequestComment | None:
    """A PR comment carrying a refusal, when the release is a pull request."""
    if release.pr_number is None:
        return None
    return PullRequestComment(release.repository, release.pr_number, key, text)


def pipeline_problem(release: ReleaseRow, error: PipelineError, config_path: str) -> Outcome:
    """An invalid pipeline file: no deploys; say where and what, in the thread and the PR."""
    assert release.id is not None
    text = f"`{config_path}` on the default branch is invalid, so nothing is deployed:\n{error}"
    key = f"pipeline-error:{hashlib.sha256(str(error).encode()).hexdigest()[:12]}"
    effects: list = [ThreadReply(release.id, key, text), RefreshBoard(release.id, key)]
    comment = refusal_comment(release, key, text)
    if comment is not None:
        effects.append(comment)
    return Outcome(effects=tuple(effects))


async def rollback(
    session: AsyncSession,
    *,
    repository: str,
    environment: str,
    requester: Person,
    now: datetime,
    source: str,
    from_release: int | None = None,
    target_sha: str | None = None,
) -> tuple[Outcome, ReleaseRow | None]:
    """Roll an environment back to `target_sha` (chosen by the requester from the commits
    that succeeded there), else to the previous good commit. The rollback belongs to the
    release that is being undone (its thread tells the story)."""
    found = await releases.current_in_environment(
        session, repository=repository, environment=environment
    )
    if found is None:
        refused = Outcome(refusal=f"Nothing has been deployed to `{environment}` yet.")
        _audit(session, refused, Asked(requester, source, "rollback", environment), repository)
        return refused, None
    row, current = found
    if from_release is not None and row.release_id != from_release:
        # A button on an older thread: what runs there now is another release's.
        refused = Outcome(
            refusal=f"`{current.environment}` now runs {current.commit_sha[:7]} from another "
            f"pull request; roll back from that thread or with `/rollback`."
        )
        _audit(session, refused, Asked(requester, source, "rollback", environment), repository)
        return refused, None
    release = await releases.get_release(session, release_id=row.release_id)
    assert release is not None
    if target_sha is None:
        target_sha = await releases.previous_good_sha(
            session,
            repository=repository,
            environment=current.environment,
            other_than=current.commit_sha,
        )
    outcome = await _with_new_id(
        session,
        lambda new_id: machine.request_rollback(
            pipeline=pipeline_of(release),
            release=releases.release_value(release),
            current=current,
            target_sha=target_sha,
            requester=requester,
            rollout_id=new_id,
            now=now,
        ),
    )
    asked = Asked(requester, source, "rollback", current.environment, target_sha)
    return await _save(session, release, outcome, asked), release


async def abandon(session: AsyncSession, *, rollout_id: int, reason: str, now: datetime) -> Outcome:
    """A rollout whose GitHub deployment was refused for good: fail it, freeing the
    environment, and say why in its thread (a canary with traffic also rolls back)."""
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return Outcome()
    row, rollout = found
    release, last_good = await _surroundings(session, row, rollout, None)
    try:
        pipeline: Pipeline | None = pipeline_of(release)
    except PipelineError:
        pipeline = None  # no rules to roll back by: it just fails
    outcome = await _with_new_id(
        session,
        lambda new_id: machine.abandon(
            pipeline=pipeline,
            release=releases.release_value(release),
            rollout=rollout,
            reason=reason,
            last_good_sha=last_good,
            rollback_id=new_id,
            now=now,
        ),
    )
    asked = Asked(
        DEPLOY_SYSTEM, "github", "deployment refused", rollout.environment, rollout.commit_sha
    )
    return await _save(session, release, outcome, asked, request=False)


async def head_moved(session: AsyncSession, *, release: ReleaseRow) -> None:
    """Cancel the release's approval requests and queued requests for commits other than
    its head."""
    assert release.id is not None
    value = releases.release_value(release)
    for rollout in await releases.rollouts_of_release(session, release_id=release.id):
        for rule in (machine.head_moved, deploy_queue.head_moved):
            outcome = rule(release=value, rollout=rollout)
            if outcome.rollouts:
                await _save(session, release, outcome, request=False)


async def start_queued(
    session: AsyncSession,
    *,
    rollout_id: int,
    now: datetime,
    checks: Verdict | None = None,
    superseded_by: str | None = None,
    recheck: timedelta = RECHECK,
) -> Outcome:
    """Try to start a queued request (`bot.pipeline.queue.start`); `checks` and
    `superseded_by` were looked up on GitHub before the transaction. One still waiting for
    its checks is looked at again after `recheck`. Losing the environment to another
    request at this moment leaves it queued."""
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return Outcome()
    row, rollout = found
    release = await releases.get_release(session, release_id=row.release_id)
    assert release is not None
    try:
        pipeline = pipeline_of(release)
    except PipelineError:
        await releases.postpone_check(session, rollout_id=rollout_id, until=now + recheck)
        return Outcome()
    target = await releases.environment_history(
        session,
        repository=release.repository,
        environment=rollout.environment,
        now=now,
        before=rollout.id,
    )
    succeeded = await releases.succeeded_environments(
        session, repository=release.repository, commit_sha=rollout.commit_sha
    )
    freeze = await freeze_rows.active(session, repository=release.repository, now=now)
    outcome = deploy_queue.start(
        pipeline=pipeline,
        release=releases.release_value(release),
        queued=rollout,
        target=target,
        succeeded_here=succeeded,
        now=now,
        checks=checks,
        freeze=freeze,
        superseded_by=superseded_by,
    )
    if not outcome.rollouts:
        if rollout.wait_checks and checks is not None and not checks.green:
            await releases.postpone_check(session, rollout_id=rollout_id, until=now + recheck)
        return outcome
    try:
        async with session.begin_nested():
            await releases.save_outcome(session, release_id=release.id or 0, outcome=outcome)
    except IntegrityError:
        return Outcome()  # another request took the environment: it stays queued
    if rollout.forced:
        _audit_force(
            session,
            release,
            rollout.environment,
            rollout.requested_by,
            freeze,
            outcome,
            "scheduler",
        )
    asked = Asked(
        rollout.requested_by, "scheduler", "queued deploy", rollout.environment, rollout.commit_sha
    )
    _audit(session, outcome, asked, release.repository)
    return outcome


async def cancel_queued(
    session: AsyncSession, *, rollout_id: int, reason: str, now: datetime
) -> Outcome:
    """Give up on a queued request that can never start (GitHub says its commit or checks
    cannot be read), saying why in its thread; it no longer holds anyone up."""
    found = await releases.get_rollout(session, rollout_id=rollout_id, for_update=True)
    if found is None:
        return Outcome()
    row, rollout = found
    release = await releases.get_release(session, release_id=row.release_id)
    assert release is not None
    outcome = deploy_queue.cancel(
        release=releases.release_value(release), rollout=rollout, reason=reason
    )
    asked = Asked(
        machine.BOT, "scheduler", "queued deploy", rollout.environment, rollout.commit_sha
    )
    return await _save(session, release, outcome, asked, request=False)


async def lock(
    session: AsyncSession,
    *,
    repository: str,
    pipeline: Pipeline,
    environment: str,
    person: Person,
    reason: str | None,
    now: datetime,
    source: str,
) -> locks.LockDecision:
    """Take or renew an environment's lock, unless someone else holds it.

    The database decides a race: the write only takes effect if nobody else took the lock
    since it was read. If someone did, read and decide again, so of two people locking at
    once exactly one holds the lock and the other is told who does."""
    decision = await _lock(session, repository, pipeline, environment, person, reason, now)
    _audit_lock(session, decision, person, source, "lock", repository, environment)
    return decision


async def _lock(
    session: AsyncSession,
    repository: str,
    pipeline: Pipeline,
    environment: str,
    person: Person,
    reason: str | None,
    now: datetime,
) -> locks.LockDecision:
    for _ in range(3):
        existing = await lock_rows.get(session, repository=repository, environment=environment)
        decision = locks.take(
            pipeline,
            environment=environment,
            person=person,
            existing=existing,
            reason=reason,
            now=now,
        )
        if decision.lock is None:
            return decision
        if await lock_rows.put(session, repository=repository, lock=decision.lock, now=now):
            return decision
    current = await lock_rows.get(session, repository=repository, environment=environment)
    now_held = (
        f" It is now {locks.describe(current)}."
        if current is not None and current.held_at(now)
        else ""
    )
    return locks.LockDecision(
        refusal=f"The lock on `{environment}` just changed.{now_held} Nothing was locked; "
        f"try again."
    )


async def unlock(
    session: AsyncSession,
    *,
    repository: str,
    pipeline: Pipeline,
    environment: str,
    person: Person,
    is_admin: bool,
    now: datetime,
    source: str,
) -> locks.LockDecision:
    """Release an environment's lock: its holder may, and so may a repository admin.

    Only the lock that was decided on is deleted: if it changed hands meanwhile, the new
    holder keeps it and the requester is told who holds it now (an admin who meant to take
    one person's lock away does not take another's without seeing it)."""
    decision = await _unlock(session, repository, pipeline, environment, person, is_admin, now)
    _audit_lock(session, decision, person, source, "unlock", repository, environment)
    return decision


async def _unlock(
    session: AsyncSession,
    repository: str,
    pipeline: Pipeline,
    environment: str,
    person: Person,
    is_admin: bool,
    now: datetime,
) -> locks.LockDecision:
    decided_on: locks.Lock | None = None
    for _ in range(3):
        existing = await lock_rows.get(session, repository=repository, environment=environment)
        decision = locks.release(
            pipeline,
            environment=environment,
            person=person,
            existing=existing,
            is_admin=is_admin,
            now=now,
        )
        if decision.refused:
            return decision
        assert existing is not None
        if decided_on is not None and not existing.holder.same_as(decided_on.holder):
            return locks.LockDecision(
                refusal=f"The lock on `{existing.environment}` just changed hands: it is now "
                f"{locks.describe(existing)}. Nothing was unlocked."
            )
        if await lock_rows.delete(session, repository=repository, lock=existing):
            await releases.wake_queue(session, repository=repository, environment=environment)
            return decision
        decided_on = decided_on or existing
    return locks.LockDecision(
        refusal=f"The lock on `{environment}` just changed. Nothing was unlocked; try again."
    )


async def gate(
    session: AsyncSession,
    *,
    release: ReleaseRow,
    environment: str,
    requester: Person,
    run_id: int,
    deployment_id: int,
    now: datetime,
) -> Outcome:
    """A GitHub Actions run waits on deploybot's deployment protection rule to deploy the
    release's commit to `environment` as GitHub's deployment `deployment_id`
    (`bot.pipeline.gates`); saves and returns the outcome. A deployment deploybot already
    follows is not decided twice. Losing the environment to another request at the same
    moment is decided again (now busy), so the waiting run is always answered."""
    outcome = await _gate(
        session,
        release=release,
        environment=environment,
        requester=requester,
        run_id=run_id,
        deployment_id=deployment_id,
        now=now,
    )
    if outcome.effects:
        asked = Asked(requester, "github", "protection rule", environment, release.commit_sha)
        _audit(session, outcome, asked, release.repository)
    return outcome


async def _gate(
    session: AsyncSession,
    *,
    release: ReleaseRow,
    environment: str,
    requester: Person,
    run_id: int,
    deployment_id: int,
    now: datetime,
) -> Outcome:
    assert release.id is not None
    value = releases.release_value(release)
    if await releases.rollout_for_deployment(session, deployment_id=deployment_id) is not None:
        return Outcome()
    try:
        pipeline = pipeline_of(release)
    except PipelineError as error:
        refused = gates.refused(
            value,
            environment=environment,
            run_id=run_id,
            deployment_id=deployment_id,
            reason=f"deploybot's pipeline file on the default branch is invalid, so nothing "
            f"is deployed: {error}",
        )
        await releases.save_outcome(session, release_id=release.id, outcome=refused)
        return refused
    env = pipeline.environment(environment)
    name = env.name if env is not None else environment
    for _ in range(3):
        target = await releases.environment_history(
            session, repository=release.repository, environment=name, now=now
        )
        succeeded = await releases.succeeded_environments(
            session, repository=release.repository, commit_sha=release.commit_sha
        )
        freeze = await freeze_rows.active(session, repository=release.repository, now=now)

        def decide(new_id: int, target=target, succeeded=succeeded, freeze=freeze) -> Outcome:
            return gates.requested(
                pipeline=pipeline,
                release=value,
                environment=environment,
                requester=requester,
                target=target,
                succeeded_here=succeeded,
                freeze=freeze,
                run_id=run_id,
                deployment_id=deployment_id,
                rollout_id=new_id,
                now=now,
            )

        outcome = await _with_new_id(session, decide)
        try:
            async with session.begin_nested():
                await releases.save_outcome(session, release_id=release.id, outcome=outcome)
        except IntegrityError:
            continue  # another request took the environment since we read it
        return outcome
    busy = gates.refused(
        value,
        environment=name,
        run_id=run_id,
        deployment_id=deployment_id,
        reason=f"`{name}` kept changing while deploybot decided. Re-run the job to ask again.",
    )
    await releases.save_outcome(session, release_id=release.id, outcome=busy)
    return busy


def _audit_lock(
    session: AsyncSession,
    decision: locks.LockDecision,
    person: Person,
    source: str,
    action: str,
    repository: str,
    environment: str,
) -> None:
    detail = (
        {"refused": decision.refusal} if decision.refused else {"announced": decision.announcement}
    )
    audit.record(
        session,
        actor=person.label,
        source=source,
        action=action,
        repository=repository,
        environment=environment,
        detail=detail,
    )
