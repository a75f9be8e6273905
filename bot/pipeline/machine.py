"""The release state machine: (state, event, time) → new state + effects. Pure.

Each function takes what it needs to decide (the pipeline file, the rollout, the facts the
caller looked up) and returns an `Outcome`: the rollouts it changed or created, the effects
to send, or a refusal that says why and what to do instead. Nothing here reads a clock,
a database or the network, so every rule is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.pipeline import canary, freezes
from bot.pipeline.checks import Verdict
from bot.pipeline.config import Checks, Environment, Health, Pipeline
from bot.pipeline.effects import (
    ApprovalDecided,
    ApprovalRequest,
    CreateDeployment,
    Effect,
    PullRequestComment,
    RefreshBoard,
    ReviewProtectionRule,
    ThreadReply,
)
from bot.pipeline.models import (
    Decision,
    EnvironmentHistory,
    Evidence,
    Kind,
    Person,
    Rollout,
    Status,
)

BOT = Person(github="deploybot")


@dataclass(frozen=True)
class Release:
    """The commit being released and where people talk about it."""

    id: int
    repository: str
    commit_sha: str
    pr_number: int | None = None

    @property
    def short_sha(self) -> str:
        return self.commit_sha[:7]


@dataclass(frozen=True)
class Outcome:
    """What a decision changed: rollouts to save, effects to send, or why nothing happened."""

    rollouts: tuple[Rollout, ...] = ()
    effects: tuple[Effect, ...] = ()
    refusal: str | None = None
    overrides: tuple[str, ...] = ()  # what `--force` went past (besides a freeze): audited

    @property
    def refused(self) -> bool:
        return self.refusal is not None


def _refuse(reason: str) -> Outcome:
    return Outcome(refusal=reason)


def _cause(rollout: Rollout) -> str:
    """What changed, unique within the release: a canary passes through the same statuses
    once per step, so its step is part of it."""
    step = "" if rollout.step is None else f":{rollout.step}"
    return f"{rollout.id}:{rollout.status.value}{step}"


def _changed(release: Release, rollout: Rollout, text: str, *extra: Effect) -> Outcome:
    """A rollout changed: say so in the thread and refresh the board."""
    cause = _cause(rollout)
    return Outcome(
        rollouts=(rollout,),
        effects=(
            ThreadReply(release.id, cause, text),
            RefreshBoard(release.id, cause),
            *extra,
        ),
    )


def _deployment(
    release: Release, rollout: Rollout, *, weight: int | None = None
) -> CreateDeployment:
    """The GitHub deployment of a rollout. A canary step is a `deploy:canary` deployment of
    its weight (its last step, 100, a plain `deploy`); `weight` overrides it (0: abort)."""
    payload: dict[str, object] = {
        "rollout": rollout.id,
        "kind": rollout.kind.value,
        "requested_by": rollout.requested_by.label,
    }
    task = "deploy"
    if rollout.step is not None:
        weight = rollout.weight if weight is None else weight
        payload |= {"weight": weight, "step": rollout.step}
        if weight is None or weight < 100:
            task = "deploy:canary"
    return CreateDeployment(
        rollout_id=rollout.id,
        repository=release.repository,
        environment=rollout.environment,
        commit_sha=rollout.commit_sha,
        task=task,
        payload=payload,
        step=rollout.step,
    )


def request_deploy(
    *,
    pipeline: Pipeline,
    release: Release,
    environment: str,
    requester: Person,
    target: EnvironmentHistory,
    succeeded_here: frozenset[str],
    rollout_id: int,
    now: datetime,
    force: bool = False,
    checks: Verdict | None = None,
    freeze: freezes.Freeze | None = None,
    queue: bool = False,
    wait: bool = False,
    offer_queue: bool = True,
) -> Outcome:
    """Someone asks to deploy the release's commit to `environment`.

    `queue` (`--queue`): instead of being refused behind someone else's lock, a busy
    environment or requests queued before it, the request waits `queued` in line. `wait`
    (`--wait`): instead of being refused while required checks are pending, it waits
    `queued` until they finish (failing checks are still refused: they will not go green
    on their own). See `bot.pipeline.queue` for how a queued request starts. Refusals
    suggest `--queue` unless `offer_queue` is off (a caller that cannot wait).

    `succeeded_here` names the environments where this commit already succeeded; `target`
    is what holds the environment now. `checks` is the verdict on the commit's statuses and
    check runs, looked up when the environment has `checks: required` (None: not looked
    up, no gate). `force` (already checked as allowed for this person) skips the ordering
    rule, the required checks and the lock. `freeze` is the repository's freeze, if any:
    while it holds only `force` goes past it, and the thread says who did. Returns the new
    rollout, awaiting approval or pending its GitHub deployment.
    """
    env = pipeline.environment(environment)
    if env is None:
        names = ", ".join(f"`{e.name}`" for e in pipeline.environments)
        return _refuse(f"`{environment}` is not an environment here. Choose one of {names}.")
    forced_past: tuple[Effect, ...] = ()
    if freeze is not None and freeze.holds_at(now):
        if not force:
            return _refuse(freezes.refusal(freeze))
        cause = f"{rollout_id}:forced-past-freeze"
        forced_past = (ThreadReply(release.id, cause, freezes.overridden(freeze, requester)),)
    overrides: list[str] = []
    previous = pipeline.previous(env.name)
    if previous is not None and previous.name not in succeeded_here:
        if force:
            overrides.append(f"the ordering rule (`{previous.name}` has not succeeded)")
        else:
            return _refuse(
                f"`{env.name}` needs `{previous.name}` to succeed for {release.short_sha} "
                f"first. Deploy it there with `/deploy {previous.name}`."
            )
    waits: list[str] = []
    if env.checks is Checks.REQUIRED and checks is not None and not checks.green:
        if force:
            overrides.append(f"its checks ({checks.describe()})")
        elif not wait or checks.failing:
            return _refuse(checks.refusal(env.name, release.short_sha))
        else:
            waits.append(f"its checks to finish ({checks.describe()})")
    if env.window is not None and not env.window.is_open(now) and force:
        overrides.append("the deploy window")
    elif env.window is not None and not env.window.is_open(now):
        window = env.window
        opening = window.next_open(now)
        when = (
            f"; it opens next {opening:%a %Y-%m-%d %H:%M} {window.timezone}"
            if opening is not None
            else ""
        )
        return _refuse(
            f"`{env.name}` is outside its deploy window ({_days(window.days)} "
            f"{window.hours} {window.timezone}){when}. Try again then, or ask one of its "
            f"approvers to use `--force`."
        )
    holder = target.lock_holder
    if holder is not None and not holder.same_as(requester) and force:
        overrides.append(f"the lock of {holder.label}")
    elif holder is not None and not holder.same_as(requester):
        why = f" ({target.lock_reason})" if target.lock_reason else ""
        if not queue:
            hint = ", or add `--queue` to deploy when it is unlocked" if offer_queue else ""
            return _refuse(
                f"`{env.name}` is locked by {holder.label}{why}. "
                f"Ask them to `/unlock {env.name}` when they are done{hint}."
            )
        waits.append(f"the lock of {holder.label}{why}")
    if target.active is not None:
        busy = target.active
        if not queue:
            hint = ", or add `--queue` to deploy after it" if offer_queue else ""
            return _refuse(
                f"`{env.name}` is busy: {busy.commit_sha[:7]} is {busy.status.value} there "
                f"(asked by {busy.requested_by.label}). Try again when it has finished{hint}."
            )
        waits.append(f"{busy.commit_sha[:7]} ({busy.status.value}) to finish")
    if target.waiting:
        ahead = _requests(target.waiting)
        if not queue:
            hint = " Add `--queue` to wait your turn." if offer_queue else " Try again later."
            return _refuse(f"`{env.name}` has {ahead} queued before yours.{hint}")
        waits.append(f"{ahead} queued before it")
    if waits:
        return _queued(release, env.name, requester, rollout_id, now, waits, force, wait)
    if overrides:
        text = f"{requester.label} used `--force` past {_and(overrides)}."
        said = ThreadReply(release.id, f"{rollout_id}:forced", text)
        forced_past = (*forced_past, said)
    started = _started(release, env, requester, rollout_id, now, forced_past)
    return replace(started, overrides=tuple(overrides))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _started(
    release: Release,
    env: Environment,
    requester: Person,
    rollout_id: int,
    now: datetime,
    forced_past: tuple[Effect, ...],
) -> Outcome:
    """A request that passed the rules: it waits for approval or deploys."""
    step, weight = canary.first(env.canary)
    if env.approvals > 0:
        rollout = Rollout(
            id=rollout_id,
            repository=release.repository,
            environment=env.name,
            commit_sha=release.commit_sha,
            status=Status.AWAITING_APPROVAL,
            requested_by=requester,
            created_at=now,
            step=step,
            weight=weight,
        )
        request = ApprovalRequest(release.id, rollout.id, env.name, requester.label, env.approvals)
        text = (
            f"{requester.label} asked to deploy {release.short_sha} to `{env.name}`: "
            f"waiting for {_approvals(env.approvals)}."
        )
        return _changed(release, rollout, text, request, *forced_past)
    rollout = Rollout(
        id=rollout_id,
        repository=release.repository,
        environment=env.name,
        commit_sha=release.commit_sha,
        status=Status.PENDING,
        requested_by=requester,
        created_at=now,
        step=step,
        weight=weight,
    )
    text = f"{requester.label} is deploying {release.short_sha} to `{env.name}`{_at(rollout)}."
    return _changed(release, rollout, text, _deployment(release, rollout), *forced_past)


def _queued(
    release: Release,
    environment: str,
    requester: Person,
    rollout_id: int,
    now: datetime,
    waits: list[str],
    force: bool,
    wait: bool,
) -> Outcome:
    """A request that waits in the environment's queue for what `waits` names."""
    rollout = queued_rollout(
        release, environment, requester, rollout_id, now, waits, force=force, wait=wait
    )
    text = (
        f"{requester.label} queued {release.short_sha} for `{environment}`: it waits for "
        f"{' and '.join(waits)}, then deploys on its own."
    )
    return _changed(release, rollout, text)


def queued_rollout(
    release: Release,
    environment: str,
    requester: Person,
    rollout_id: int,
    now: datetime,
    waits: list[str],
    *,
    force: bool = False,
    wait: bool = False,
) -> Rollout:
    """A deploy of the release's commit waiting in the environment's queue, its note
    naming what it waits for."""
    return Rollout(
        id=rollout_id,
        repository=release.repository,
        environment=environment,
        commit_sha=release.commit_sha,
        status=Status.QUEUED,
        requested_by=requester,
        created_at=now,
        forced=force,
        wait_checks=wait,
        note=f"waiting for {' and '.join(waits)}",
    )


def _requests(count: int) -> str:
    return "1 request" if count == 1 else f"{count} requests"


def _days(days: frozenset[int]) -> str:
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    return ",".join(names[d] for d in sorted(days))


def _approvals(count: int) -> str:
    return "1 approval" if count == 1 else f"{count} approvals"


def decide(
    *,
    pipeline: Pipeline,
    release: Release,
    rollout: Rollout,
    person: Person,
    approve: bool,
    authorised: bool,
    now: datetime,
    reason: str | None = None,
) -> Outcome:
    """An approver clicks Approve or Reject (or comments `/approve`, `/reject`).

    `authorised` is whether `person` is one of the environment's approvers (the caller
    resolved teams and admins). The requester never counts; a person counts once; an
    approval is for the commit it was asked for (`release.commit_sha` is the PR's head now).
    """
    env = pipeline.environment(rollout.environment)
    if rollout.status is not Status.AWAITING_APPROVAL:
        return _refuse(_already_decided(rollout))
    if release.commit_sha != rollout.commit_sha:
        cancelled = replace(
            rollout,
            status=Status.CANCELLED,
            note=f"the pull request moved to {release.short_sha}; approvals were for "
            f"{rollout.commit_sha[:7]}",
        )
        text = (
            f"Deploy of {rollout.commit_sha[:7]} to `{rollout.environment}` cancelled: the pull "
            f"request's head is now {release.short_sha}. Ask again with "
            f"`/deploy {rollout.environment}`."
        )
        outcome = _changed(
            release,
            cancelled,
            text,
            ApprovalDecided(release.id, rollout.id, "cancelled"),
            *_gate_answer(release, cancelled, f"Cancelled by deploybot: {cancelled.note}."),
        )
        return replace(outcome, refusal="the approval request was for an older commit")
    if person.same_as(rollout.requested_by):
        return _refuse(
            f"You asked for this deploy, so your approval cannot count. "
            f"Another approver of `{rollout.environment}` must decide."
        )
    others = (rollout.requested_by, *(d.person for d in rollout.approvals()))
    if not all(person.comparable(other) for other in others):
        # Without both identities we cannot rule out a self-approval or a double count.
        return _refuse(
            "deploybot cannot tell whether you asked for this deploy or approved it already: "
            "your GitHub login and Slack id must be paired under `users:` in the pipeline file."
        )
    if not authorised:
        return _refuse(f"You are not an approver of `{rollout.environment}`.")
    if any(d.person.same_as(person) for d in rollout.approvals()):
        return _refuse("You already approved this deploy; each approver counts once.")
    decision = Decision(person, approve, rollout.commit_sha, now, reason)
    decided = replace(rollout, decisions=(*rollout.decisions, decision))
    if not approve:
        rejected = replace(decided, status=Status.REJECTED, note=reason)
        why = f": {reason}" if reason else "."
        text = f"{person.label} rejected the deploy to `{rollout.environment}`{why}"
        return _changed(
            release,
            rejected,
            text,
            ApprovalDecided(release.id, rollout.id, "rejected"),
            *_gate_answer(release, rejected, f"Rejected by {person.label} in deploybot{why}"),
        )
    needed = env.approvals if env is not None else 1
    have = len(decided.approvals())
    if have < needed:
        text = (
            f"{person.label} approved the deploy to `{rollout.environment}` ({have} of {needed})."
        )
        return Outcome(
            rollouts=(decided,),
            effects=(ThreadReply(release.id, f"{rollout.id}:approval:{have}", text),),
        )
    approved = replace(decided, status=Status.PENDING)
    names = ", ".join(d.person.label for d in approved.approvals())
    text = f"Approved by {names}: deploying {rollout.commit_sha[:7]} to `{rollout.environment}`."
    start = _gate_answer(release, approved, f"Approved by {names} in deploybot.") or (
        _deployment(release, approved),
    )
    return _changed(
        release, approved, text, *start, ApprovalDecided(release.id, rollout.id, "approved")
    )


def _gate_answer(release: Release, rollout: Rollout, comment: str) -> tuple[Effect, ...]:
    """A rollout that gates a GitHub Actions run (deployment protection rule): the decision
    goes back to that run, which then deploys on its own. Nothing for other rollouts."""
    if rollout.gate_run_id is None or rollout.deployment_id is None:
        return ()
    state = "approved" if rollout.status is Status.PENDING else "rejected"
    return (
        ReviewProtectionRule(
            repository=release.repository,
            run_id=rollout.gate_run_id,
            deployment_id=rollout.deployment_id,
            environment=rollout.environment,
            state=state,
            comment=comment,
        ),
    )


def _already_decided(rollout: Rollout) -> str:
    rejection = rollout.rejection()
    if rejection is not None:
        return f"Already decided: {rejection.person.label} rejected it."
    approvals = rollout.approvals()
    if approvals:
        names = ", ".join(d.person.label for d in approvals)
        return f"Already decided: approved by {names}; it is {rollout.status.value} now."
    return f"Nothing to decide: the deploy is {rollout.status.value}."


def deployment_reported(
    *,
    pipeline: Pipeline,
    release: Release,
    rollout: Rollout,
    state: str,
    now: datetime,
    last_good_sha: str | None,
    rollback_id: int,
    replaced: Rollout | None = None,
    description: str | None = None,
) -> Outcome:
    """The deploy system reported a deployment status (`in_progress`, `success`, ...).

    A successful deploy with health checks enters `verifying`; without them it succeeds at
    once. A rollback that succeeds marks the rollout it replaced `rolled_back`.
    """
    if not rollout.status.active:
        return Outcome()  # a late or repeated report changes nothing
    if rollout.status is Status.AWAITING_APPROVAL:
        return _gate_ended(release, rollout, state)
    env = pipeline.environment(rollout.environment)
    if state == "in_progress" and rollout.status is Status.PENDING:
        running = replace(rollout, status=Status.IN_PROGRESS)
        return _changed(release, running, f"Deploying {_what(rollout)}…")
    if state == "success" and rollout.status in {Status.PENDING, Status.IN_PROGRESS}:
        if env is not None and canary.orphaned(env.canary, rollout):
            if rollout.paused_at is not None:
                # Paused: the full deploy waits for the resume (the next probe makes it).
                held = replace(rollout, status=Status.VERIFYING, next_check_at=None)
                return _changed(release, held, f"Deployed {_what(rollout)}{_at(rollout)}.")
            return _final_step(release, rollout)
        step = canary.current(env.canary, rollout) if env is not None else None
        if env is not None and env.canary is not None and step is not None:
            return _verify_step(release, rollout, env, now)
        if env is not None and env.health is not None and rollout.kind is Kind.DEPLOY:
            verifying = replace(
                rollout,
                status=Status.VERIFYING,
                next_check_at=None if rollout.paused_at else now,
                failure_streak=0,
                healthy_since=None,
            )
            soak = _duration(env.health.soak)
            text = f"Deployed {_what(rollout)}; checking its health for {soak}."
            return _changed(release, verifying, text)
        return _succeed(release, rollout, replaced)
    if state in {"failure", "error"}:
        reason = f"the deploy system reported {state}"
        if description:
            reason += f" ({description})"
        return fail(
            pipeline=pipeline,
            release=release,
            rollout=rollout,
            reason=reason,
            evidence=(),
            last_good_sha=last_good_sha,
            rollback_id=rollback_id,
            now=now,
        )
    return Outcome()


def _gate_ended(release: Release, rollout: Rollout, state: str) -> Outcome:
    """A status for a deployment still waiting for approval: only a run waiting on our
    protection rule has one, and a failure means the run stopped waiting (cancelled, timed
    out). Nothing was deployed, so the request is cancelled; nothing is rolled back."""
    if state not in {"failure", "error", "inactive"}:
        return Outcome()
    cancelled = replace(
        rollout, status=Status.CANCELLED, note=f"GitHub reported {state} before it was approved"
    )
    text = (
        f"The request to deploy {rollout.commit_sha[:7]} to `{rollout.environment}` is "
        f"cancelled: GitHub reported its deployment {state} before it was approved."
    )
    return _changed(release, cancelled, text, ApprovalDecided(release.id, rollout.id, "cancelled"))


def _verify_step(release: Release, rollout: Rollout, env: Environment, now: datetime) -> Outcome:
    """A canary step is deployed: verify it for `pause` with the environment's health
    checks, or, without any, just wait `pause` (a paused rollout waits for resume first)."""
    assert env.canary is not None
    pause = env.canary.pause
    checked = env.health is not None
    verifying = replace(
        rollout,
        status=Status.VERIFYING,
        failure_streak=0,
        held_at=None,
        # Paused: the wait starts at the resume (see `resume`), not now.
        healthy_since=None if checked or rollout.paused_at else now,
        next_check_at=None if rollout.paused_at else (now if checked else now + pause),
    )
    how = "checking its health" if checked else "waiting"
    text = (
        f"Canary of {rollout.commit_sha[:7]} in `{rollout.environment}` is at "
        f"{rollout.weight}% ({canary.position(env.canary, rollout)}); {how} for "
        f"{_duration(pause)} before the next step."
    )
    return _changed(release, verifying, text)


def _at(rollout: Rollout) -> str:
    """` at 10% (canary)` for a canary's rollout, else nothing."""
    return f" at {rollout.weight}% (canary)" if rollout.step is not None else ""


def _what(rollout: Rollout) -> str:
    verb = "the rollback of" if rollout.kind is Kind.ROLLBACK else ""
    return f"{verb} `{rollout.environment}` to {rollout.commit_sha[:7]}".strip()


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _succeed(release: Release, rollout: Rollout, replaced: Rollout | None) -> Outcome:
    done = replace(rollout, status=Status.SUCCESS, next_check_at=None)
    if rollout.kind is Kind.ROLLBACK:
        text = f"Rolled back `{rollout.environment}` to {rollout.commit_sha[:7]}."
        outcome = _changed(release, done, text)
        if replaced is not None and replaced.status in {Status.FAILURE, Status.SUCCESS}:
            undone = replace(replaced, status=Status.ROLLED_BACK)
            cause = f"{undone.id}:{undone.status.value}"
            return Outcome(
                rollouts=(*outcome.rollouts, undone),
                effects=(*outcome.effects, RefreshBoard(release.id, cause)),
            )
        return outcome
    return _changed(release, done, f"`{rollout.environment}` is running {rollout.commit_sha[:7]}.")


def promoted_on_success(pipeline: Pipeline, release: Release, outcome: Outcome) -> str | None:
    """The environment to deploy to next on its own (`auto: true`): after a deploy of the
    release's current commit succeeded in the environment before it. None otherwise (a
    rollback, an older commit, the last environment, a manual next one)."""
    for rollout in outcome.rollouts:
        if (
            rollout.status is Status.SUCCESS
            and rollout.kind is Kind.DEPLOY
            and rollout.commit_sha == release.commit_sha
            and pipeline.environment(rollout.environment) is not None
        ):
            following = pipeline.next(rollout.environment)
            if following is not None and following.auto:
                return following.name
    return None


def deployed_on_merge(pipeline: Pipeline) -> str | None:
    """The environment a merge to the default branch deploys to on its own: the first, when
    it is `auto: true`."""
    first = pipeline.environments[0] if pipeline.environments else None
    return first.name if first is not None and first.auto else None


def held_back(release: Release, environment: str, refusal: str) -> Outcome:
    """An automatic deploy the rules refused (a lock, a window, a busy environment): say so
    in the thread, so people know why it did not go on."""
    text = f"Not deploying {release.short_sha} to `{environment}` on its own: {refusal}"
    return Outcome(
        effects=(ThreadReply(release.id, f"auto:{environment}:{release.commit_sha}", text),)
    )


def probed(
    *,
    pipeline: Pipeline,
    release: Release,
    rollout: Rollout,
    evidence: Evidence,
    now: datetime,
    last_good_sha: str | None,
    rollback_id: int,
) -> Outcome:
    """A health probe of a verifying rollout came back.

    Healthy for the whole `soak` → success; `failures` failed probes in a row → failure
    (and a rollback when `auto_rollback`). Otherwise the next probe is due in `interval`.
    The thread shows what was measured: on success the last probe's values, at the first
    failed probe of a run and at the failure the checks that failed (query, value, bound).
    """
    env = pipeline.environment(rollout.environment)
    if rollout.status is not Status.VERIFYING or rollout.paused_at is not None:
        return Outcome()
    if env is not None and canary.orphaned(env.canary, rollout):
        return _final_step(release, rollout)
    if env is not None and env.canary is not None:
        step = canary.current(env.canary, rollout)
        if step is not None:
            return _probed_step(
                pipeline=pipeline,
                release=release,
                rollout=rollout,
                env=env,
                manual=step.manual,
                evidence=evidence,
                now=now,
                last_good_sha=last_good_sha,
                rollback_id=rollback_id,
            )
    if env is None or env.health is None:
        # The pipeline file changed under a verifying rollout: nothing left to verify.
        done = replace(rollout, note="its health checks were removed from the pipeline file")
        return _succeed(release, done, None)
    health = env.health
    if evidence.healthy:
        since = rollout.healthy_since or evidence.at
        if now - since >= health.soak:
            done = replace(rollout, healthy_since=since)
            return _measured(_succeed(release, done, None), release, done, health.soak, evidence)
        waiting = replace(
            rollout, healthy_since=since, failure_streak=0, next_check_at=now + health.interval
        )
        return Outcome(rollouts=(waiting,))
    return _unhealthy(
        pipeline=pipeline,
        release=release,
        rollout=rollout,
        health=health,
        evidence=evidence,
        now=now,
        last_good_sha=last_good_sha,
        rollback_id=rollback_id,
    )


def _probed_step(
    *,
    pipeline: Pipeline,
    release: Release,
    rollout: Rollout,
    env: Environment,
    manual: bool,
    evidence: Evidence,
    now: datetime,
    last_good_sha: str | None,
    rollback_id: int,
) -> Outcome:
    """A probe of a canary step short of 100 %: healthy for `pause` → the next step starts,
    or, for a `manual` step, it holds (still probed) until someone promotes it."""
    assert env.canary is not None
    health = env.health
    pause = env.canary.pause
    if health is not None and not evidence.healthy:
        return _unhealthy(
            pipeline=pipeline,
            release=release,
            rollout=rollout,
            health=health,
            evidence=evidence,
            now=now,
            last_good_sha=last_good_sha,
            rollback_id=rollback_id,
        )
    since = rollout.healthy_since or evidence.at
    again = now + health.interval if health is not None else None
    if now - since < pause:
        due = again if again is not None else since + pause
        return Outcome(
            rollouts=(replace(rollout, healthy_since=since, failure_streak=0, next_check_at=due),)
        )
    verified = replace(rollout, healthy_since=since, failure_streak=0)
    measured = f": {evidence.detail}" if health is not None else ""
    if not manual:
        said = f"healthy at {rollout.weight}% for {_duration(pause)}{measured}"
        return _next_step(release, verified, env, now, said)
    if rollout.held_at is not None:
        return Outcome(rollouts=(replace(verified, next_check_at=again),))
    held = replace(verified, held_at=now, next_check_at=again)
    text = (
        f"Canary of {rollout.commit_sha[:7]} in `{rollout.environment}` holds at "
        f"{rollout.weight}% (healthy for {_duration(pause)}{measured}). Promote it to go on."
    )
    return Outcome(
        rollouts=(held,),
        effects=(
            ThreadReply(release.id, f"{_cause(held)}:held", text),
            RefreshBoard(release.id, f"{_cause(held)}:held"),
        ),
    )


def _next_step(
    release: Release, rollout: Rollout, env: Environment, now: datetime, why: str
) -> Outcome:
    """Start the canary's next step: a new deployment at the next weight."""
    assert env.canary is not None
    step, weight = canary.following(env.canary, rollout)
    moved = _at_step(rollout, step, weight)
    text = (
        f"Canary of {rollout.commit_sha[:7]} in `{rollout.environment}` {why}; going to "
        f"{weight}% ({canary.position(env.canary, moved)})."
    )
    return _changed(release, moved, text, _deployment(release, moved))


def _final_step(release: Release, rollout: Rollout) -> Outcome:
    """A canary whose step the pipeline file no longer has: it goes to 100 % at once, as a
    plain deploy (left at its weight, it would count as deployed while it is not)."""
    moved = _at_step(rollout, (rollout.step or 0) + 1, 100)
    text = (
        f"The pipeline file no longer has the canary step {rollout.commit_sha[:7]} is at in "
        f"`{rollout.environment}` ({rollout.weight}%): deploying it fully."
    )
    return _changed(release, moved, text, _deployment(release, moved))


def _at_step(rollout: Rollout, step: int, weight: int) -> Rollout:
    return replace(
        rollout,
        status=Status.PENDING,
        step=step,
        weight=weight,
        deployment_id=None,
        failure_streak=0,
        healthy_since=None,
        next_check_at=None,
        held_at=None,
    )


def _unhealthy(
    *,
    pipeline: Pipeline,
    release: Release,
    rollout: Rollout,
    health: Health,
    evidence: Evidence,
    now: datetime,
    last_good_sha: str | None,
    rollback_id: int,
) -> Outcome:
    """A failed probe: `failures` in a row fail the rollout, the first of a run is said."""
    streak = rollout.failure_streak + 1
    if streak >= health.failures:
        reason = f"{streak} health checks in a row failed"
        shown: tuple[Evidence, ...] = (evidence,)
        if evidence.failed:
            # The failing checks name what failed (`error_ratio = 0.05 > max 0.02`) in the
            # failure, the rollback's announcement and the board; the quote keeps the rest.
            reason += f" ({_lines(evidence.failed)})"
            passed = "; ".join(evidence.passed)
            shown = (replace(evidence, detail=f"still passing: {passed}"),) if passed else ()
        return fail(
            pipeline=pipeline,
            release=release,
            rollout=replace(rollout, failure_streak=streak),
            reason=reason,
            evidence=shown,
            last_good_sha=last_good_sha,
            rollback_id=rollback_id,
            now=now,
        )
    unhealthy = replace(
        rollout,
        healthy_since=None,
        failure_streak=streak,
        next_check_at=now + health.interval,
        held_at=None,  # a held step that fails a check must be verified again
    )
    if streak > 1:
        return Outcome(rollouts=(unhealthy,))
    # The first failed probe of a run says what it saw; the next ones stay quiet until the
    # run ends: healthy again (the soak starts over), or `failures` long (the failure says).
    text = (
        f"`{rollout.environment}` failed a health check ({streak} of {health.failures} in a "
        f"row fail the deploy): {_lines(evidence.failed) or evidence.detail}. Checking again "
        f"in {_duration(health.interval)}."
    )
    event = f"{rollout.id}:unhealthy:{evidence.at.isoformat()}"
    return Outcome(rollouts=(unhealthy,), effects=(ThreadReply(release.id, event, text),))


# A failure's reason is also the rollout's note on the board: a line, not every series.
_MAX_REASON_CHECKS = 300


def _lines(checks: tuple[str, ...]) -> str:
    text = "; ".join(checks)
    return text if len(text) <= _MAX_REASON_CHECKS else text[: _MAX_REASON_CHECKS - 1] + "…"


def _measured(
    outcome: Outcome, release: Release, rollout: Rollout, soak: timedelta, evidence: Evidence
) -> Outcome:
    """A rollout healthy for its whole soak succeeded: its success reply also says what the
    last probe measured (`healthy for 5m: error_ratio = 0.004 ≤ max 0.02`)."""
    said = f"healthy for {_duration(soak)}: {evidence.detail}"
    success = _cause(replace(rollout, status=Status.SUCCESS))
    effects: list[Effect] = []
    told = False
    for effect in outcome.effects:
        if isinstance(effect, ThreadReply) and effect.event == success and not told:
            effect = replace(effect, text=f"{effect.text.removesuffix('.')}, {said}.")
            told = True
        effects.append(effect)
    if not told:
        text = f"`{rollout.environment}` was {said}."
        effects.insert(0, ThreadReply(release.id, f"{rollout.id}:healthy", text))
    return replace(outcome, effects=tuple(effects))


def fail(
    *,
    pipeline: Pipeline,
    release: Release,
    rollout: Rollout,
    reason: str,
    evidence: tuple[Evidence, ...],
    last_good_sha: str | None,
    rollback_id: int,
    now: datetime,
) -> Outcome:
    """A rollout failed. With `auto_rollback`, start exactly one rollback to the last good
    commit; otherwise, or when there is none to go back to, say why not."""
    failed = replace(rollout, status=Status.FAILURE, next_check_at=None, note=reason)
    seen = "".join(f"\n> {e.detail}" for e in evidence)
    text = f"{_what(rollout).capitalize()} failed: {reason}.{seen}"
    outcome = _changed(release, failed, text)
    env = pipeline.environment(rollout.environment)
    if rollout.kind is Kind.ROLLBACK:
        return _also_tell(outcome, release, rollout, "Rollback failed: someone must step in.")
    if env is None or not env.auto_rollback:
        return outcome
    if last_good_sha is None or last_good_sha == rollout.commit_sha:
        if rollout.step is not None and (rollout.weight or 0) < 100:
            # Nothing older ran here, but the canary's traffic can still go back to none.
            text = (
                f"No earlier successful commit in `{rollout.environment}`: taking the canary "
                f"of {rollout.commit_sha[:7]} back to 0%."
            )
            abort = ThreadReply(release.id, f"{rollout.id}:abort", text)
            return replace(
                outcome,
                effects=(*outcome.effects, abort, _deployment(release, failed, weight=0)),
            )
        return _also_tell(
            outcome,
            release,
            rollout,
            f"No automatic rollback: `{rollout.environment}` has no earlier successful "
            f"commit to go back to.",
        )
    rollback = _rollback_of(rollout, last_good_sha, BOT, rollback_id, now, reason)
    announce = ThreadReply(
        release.id,
        f"{rollback.id}:rollback",
        f"Rolling `{rollout.environment}` back to {last_good_sha[:7]} because {reason}.",
    )
    return Outcome(
        rollouts=(*outcome.rollouts, rollback),
        effects=(*outcome.effects, announce, _deployment(release, rollback)),
    )


def _rollback_of(
    rollout: Rollout,
    target_sha: str,
    requester: Person,
    rollout_id: int,
    now: datetime,
    reason: str,
) -> Rollout:
    """A new rollout that redeploys `target_sha` where `rollout` ran, replacing it."""
    return Rollout(
        id=rollout_id,
        repository=rollout.repository,
        environment=rollout.environment,
        commit_sha=target_sha,
        status=Status.PENDING,
        requested_by=requester,
        created_at=now,
        kind=Kind.ROLLBACK,
        replaces=rollout.id,
        note=reason,
    )


def _also_tell(outcome: Outcome, release: Release, rollout: Rollout, text: str) -> Outcome:
    effects: list[Effect] = [ThreadReply(release.id, f"{rollout.id}:no-rollback", text)]
    if release.pr_number is not None:
        effects.append(
            PullRequestComment(
                release.repository, release.pr_number, f"{rollout.id}:no-rollback", text
            )
        )
    return replace(outcome, effects=(*outcome.effects, *effects))


def request_rollback(
    *,
    pipeline: Pipeline,
    release: Release,
    current: Rollout,
    target_sha: str | None,
    requester: Person,
    rollout_id: int,
    now: datetime,
) -> Outcome:
    """Someone asks to roll `current` (the deploy running or verifying in an environment,
    of `release`) back to `target_sha`, the last other commit that succeeded there.

    Rollbacks are never held by windows, locks or approvals. A deploy still verifying is
    failed first, with the requester named as the reason.
    """
    env = pipeline.environment(current.environment)
    name = env.name if env is not None else current.environment
    if current.kind is Kind.ROLLBACK and current.status.active:
        return _refuse(f"`{name}` is already being rolled back to {current.commit_sha[:7]}.")
    # A canary past its first step already takes traffic: it may be stopped mid-step.
    canary_running = (current.step or 0) > 0 and current.status in {
        Status.PENDING,
        Status.IN_PROGRESS,
    }
    if current.status not in {Status.SUCCESS, Status.VERIFYING, Status.FAILURE} and not (
        canary_running
    ):
        return _refuse(
            f"`{name}` is {current.status.value}; roll back once its deploy has finished."
        )
    if target_sha is None or target_sha == current.commit_sha:
        return _refuse(f"`{name}` has no earlier successful commit to roll back to.")
    reason = f"{requester.label} asked for a rollback"
    replaced = current
    effects: tuple[Effect, ...] = ()
    if current.status is Status.VERIFYING or canary_running:
        replaced = replace(current, status=Status.FAILURE, next_check_at=None, note=reason)
        effects = _changed(
            release, replaced, f"{_what(current).capitalize()} stopped: {reason}."
        ).effects
    rollback = _rollback_of(current, target_sha, requester, rollout_id, now, reason)
    announce = ThreadReply(
        release.id,
        f"{rollback.id}:rollback",
        f"{requester.label} is rolling `{name}` back from {current.commit_sha[:7]} to "
        f"{target_sha[:7]}.",
    )
    changed = (replaced, rollback) if replaced is not current else (rollback,)
    cause = f"{rollback.id}:{rollback.status.value}"
    return Outcome(
        rollouts=changed,
        effects=(
            *effects,
            announce,
            RefreshBoard(release.id, cause),
            _deployment(release, rollback),
        ),
    )


def abandon(
    *,
    pipeline: Pipeline | None,
    release: Release,
    rollout: Rollout,
    reason: str,
    last_good_sha: str | None,
    rollback_id: int,
    now: datetime,
) -> Outcome:
    """The deployment could not even be created (GitHub refused it): the rollout failed. For
    a first deployment nothing changed in the environment, so there is nothing to roll back;
    a canary past its first step already has traffic, so it fails like any failure."""
    if not rollout.status.active:
        return Outcome()
    if (rollout.step or 0) > 0 and pipeline is not None:
        # What runs is the step before: fail that one (with nothing to roll back to, its
        # traffic is taken back to 0 %).
        env = pipeline.environment(rollout.environment)
        steps = env.canary.steps if env is not None and env.canary is not None else ()
        before = (rollout.step or 1) - 1
        weight = steps[before].weight if before < len(steps) - 1 else 1
        return fail(
            pipeline=pipeline,
            release=release,
            rollout=replace(rollout, step=before, weight=weight),
            reason=f"its next step could not start: {reason}",
            evidence=(),
            last_good_sha=last_good_sha,
            rollback_id=rollback_id,
            now=now,
        )
    failed = replace(rollout, status=Status.FAILURE, next_check_at=None, note=reason)
    return _changed(release, failed, f"{_what(rollout).capitalize()} could not start: {reason}.")


def head_moved(*, release: Release, rollout: Rollout) -> Outcome:
    """The pull request moved on: a request still waiting for approval of an older commit is
    cancelled (approvals are for the commit they were asked for) and frees the environment."""
    if rollout.status is not Status.AWAITING_APPROVAL or rollout.commit_sha == release.commit_sha:
        return Outcome()
    cancelled = replace(
        rollout,
        status=Status.CANCELLED,
        note=f"the pull request moved to {release.short_sha}",
    )
    text = (
        f"The request to deploy {rollout.commit_sha[:7]} to `{rollout.environment}` is cancelled: "
        f"the pull request's head is now {release.short_sha}. Ask again with "
        f"`/deploy {rollout.environment}`."
    )
    return _changed(
        release,
        cancelled,
        text,
        ApprovalDecided(release.id, rollout.id, "cancelled"),
        *_gate_answer(release, cancelled, f"Cancelled by deploybot: {cancelled.note}."),
    )


def pause(*, release: Release, rollout: Rollout, person: Person, now: datetime) -> Outcome:
    """Someone pauses a rollout that is deploying or verifying: its timers stand still (no
    health checks, no next canary step, no success) until it is resumed. A rollback can
    still be asked for; a failure the deploy system reports still counts."""
    where = f"`{rollout.environment}`"
    if rollout.kind is not Kind.DEPLOY or rollout.status not in _PAUSABLE:
        return _refuse(
            f"Nothing to pause in {where}: its deploy of {rollout.commit_sha[:7]} is "
            f"{rollout.status.value}."
        )
    if rollout.paused_at is not None:
        return _refuse(f"{where} is already paused ({rollout.note or 'paused'}).")
    paused = replace(rollout, paused_at=now, next_check_at=None, note=f"paused by {person.label}")
    text = (
        f"{person.label} paused the rollout of {rollout.commit_sha[:7]} in {where}"
        f"{_at(rollout)}. Nothing moves on until it is resumed with "
        f"`/deploy resume {rollout.environment}`."
    )
    return _changed_once(release, paused, f"paused:{now.isoformat()}", text)


def resume(*, release: Release, rollout: Rollout, person: Person, now: datetime) -> Outcome:
    """Continue a paused rollout where it stood: a soak or a canary step's verification
    keeps the healthy time it had before the pause."""
    if rollout.paused_at is None or not rollout.status.active:
        return _refuse(f"`{rollout.environment}` is not paused.")
    stood = now - rollout.paused_at
    resumed = replace(
        rollout,
        paused_at=None,
        note=None,
        healthy_since=rollout.healthy_since + stood if rollout.healthy_since else None,
        next_check_at=now if rollout.status is Status.VERIFYING else None,
    )
    text = (
        f"{person.label} resumed the rollout of {rollout.commit_sha[:7]} in "
        f"`{rollout.environment}`{_at(rollout)}."
    )
    return _changed_once(release, resumed, f"resumed:{now.isoformat()}", text)


def promote_step(
    *, pipeline: Pipeline, release: Release, rollout: Rollout, person: Person, now: datetime
) -> Outcome:
    """Someone promotes a canary that holds at a verified `manual` step: the next step
    starts. Refused while it is still being verified, paused, or not a holding canary."""
    env = pipeline.environment(rollout.environment)
    where = f"`{rollout.environment}`"
    if env is None or env.canary is None or canary.current(env.canary, rollout) is None:
        return _refuse(f"{where} has no canary step to promote.")
    if rollout.paused_at is not None:
        return _refuse(f"{where} is paused; resume it before promoting.")
    if rollout.status is not Status.VERIFYING or rollout.held_at is None:
        return _refuse(
            f"The canary in {where} is at {rollout.weight}% and {rollout.status.value}; it "
            f"can be promoted once that step has been healthy for "
            f"{_duration(env.canary.pause)}."
        )
    return _next_step(release, rollout, env, now, f"was promoted by {person.label}")


_PAUSABLE = frozenset({Status.PENDING, Status.IN_PROGRESS, Status.VERIFYING})


def _changed_once(release: Release, rollout: Rollout, event: str, text: str) -> Outcome:
    """A change that may happen several times in one status (pause, resume): its own key."""
    cause = f"{rollout.id}:{event}"
    return Outcome(
        rollouts=(rollout,),
        effects=(ThreadReply(release.id, cause, text), RefreshBoard(release.id, cause)),
    )
