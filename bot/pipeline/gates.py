"""deploybot as a GitHub Actions deployment protection rule (a "gate"). Pure.

An Actions job that deploys to an environment protected by this App waits until deploybot
answers. `requested` decides that with the rules of any deploy request
(`machine.request_deploy`: freeze, ordering, window, lock, busy environment, approvals), so
a deploy started from a workflow is held to the same pipeline file as `/deploy`. The run
does the deploy itself, so deploybot never creates a deployment for it: it follows the
run's own (`deployment_id`), whose statuses then move the rollout as usual.

Where the issue is silent, this is what a person would expect:

- The requester is whoever started the run (`sender`), as `users:` maps them; a run a bot
  started is asked for by the deployment's creator. They cannot approve their own deploy.
- A gate never overrides anything: there is no `--force` in a workflow.
- Required checks are not consulted: the waiting run's own jobs are among the commit's
  check runs and would always be pending. Order the workflow's jobs (`needs:`) instead.
- Canary steps are not applied: the workflow deploys the whole commit its own way.
- A refusal holds nothing: the run is rejected with the reason (shown on the run in
  GitHub), the thread says why, and a re-run of the job asks again.
- An environment running deploybot's own deployment of this very commit (a workflow that
  listens to `deployment` events deploys it through a protected job) is approved at once:
  the deploy was already decided, and rejecting it as "busy" would stop it.
- Every answer is keyed by the deployment it answers: one answer per deployment, even
  when GitHub asks again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.pipeline import freezes
from bot.pipeline.config import Pipeline
from bot.pipeline.effects import (
    ApprovalRequest,
    CreateDeployment,
    Effect,
    ReviewProtectionRule,
    ThreadReply,
)
from bot.pipeline.machine import Outcome, Release, request_deploy
from bot.pipeline.models import EnvironmentHistory, Person, Rollout, Status

APPROVED, REJECTED = "approved", "rejected"


def requested(
    *,
    pipeline: Pipeline,
    release: Release,
    environment: str,
    requester: Person,
    target: EnvironmentHistory,
    succeeded_here: frozenset[str],
    freeze: freezes.Freeze | None,
    run_id: int,
    deployment_id: int,
    rollout_id: int,
    now: datetime,
) -> Outcome:
    """GitHub Actions run `run_id` waits to deploy `release`'s commit to `environment`
    (GitHub's deployment `deployment_id`). Returns one of:

    - refused: the run is rejected with the reason, the thread says why, no rollout;
    - approvals needed: a rollout awaiting approval that gates the run, with the usual
      Approve / Reject request (the decision answers the run: `machine.decide`);
    - nothing to wait for: the run is approved now and a pending rollout follows its
      deployment.
    """
    asked = f"GitHub Actions run {run_id} asks to deploy {release.short_sha} to `{environment}`"
    env = pipeline.environment(environment)
    if env is None:
        names = ", ".join(f"`{e.name}`" for e in pipeline.environments)
        return refused(
            release,
            environment=environment,
            run_id=run_id,
            deployment_id=deployment_id,
            reason=f"`{environment}` is not an environment in deploybot's pipeline file "
            f"(it has {names}), so deploybot cannot approve deploys to it. Add it there, or "
            f"remove deploybot from the environment's protection rules.",
        )
    running = target.active
    if (
        running is not None
        and running.gate_run_id is None
        and running.deployment_id != deployment_id
        and running.commit_sha == release.commit_sha
        and running.status in {Status.PENDING, Status.IN_PROGRESS}
    ):
        comment = (
            f"deploybot already started this deploy of {release.short_sha} to `{env.name}` "
            f"(asked by {running.requested_by.label})."
        )
        text = f"{asked}: approved, as part of the deploy deploybot already started."
        return Outcome(
            effects=(
                _answer(deployment_id, release, env.name, run_id, APPROVED, comment),
                ThreadReply(release.id, f"gate:{deployment_id}:joined", text),
            )
        )
    outcome = request_deploy(
        pipeline=pipeline,
        release=release,
        environment=env.name,
        requester=requester,
        target=target,
        succeeded_here=succeeded_here,
        rollout_id=rollout_id,
        now=now,
        freeze=freeze,
        offer_queue=False,  # a waiting run cannot be queued; it is re-run instead
    )
    if outcome.refusal is not None or not outcome.rollouts:
        return refused(
            release,
            environment=env.name,
            run_id=run_id,
            deployment_id=deployment_id,
            reason=outcome.refusal or f"deploybot would not deploy to `{env.name}`.",
        )
    (rollout,) = outcome.rollouts
    gated = replace(
        rollout, gate_run_id=run_id, deployment_id=deployment_id, step=None, weight=None
    )
    who = f"for {requester.label}"
    if gated.status is Status.AWAITING_APPROVAL:
        request = next(e for e in outcome.effects if isinstance(e, ApprovalRequest))
        needed = request.approvals_needed
        approvals = "1 approval" if needed == 1 else f"{needed} approvals"
        return _gate(outcome, gated, f"{asked} {who}: waiting for {approvals}.")
    comment = f"Approved by deploybot for {requester.label}: `{env.name}` needs no approval."
    answer = _answer(deployment_id, release, env.name, run_id, APPROVED, comment)
    return _gate(outcome, gated, f"{asked} {who}: approved, no approval needed.", answer)


def refused(
    release: Release, *, environment: str, run_id: int, deployment_id: int, reason: str
) -> Outcome:
    """Reject the waiting run with `reason` and say so in the thread; nothing is held."""
    text = (
        f"GitHub Actions run {run_id} asked to deploy {release.short_sha} to "
        f"`{environment}`; deploybot rejected it: {reason}"
    )
    return Outcome(
        effects=(
            _answer(deployment_id, release, environment, run_id, REJECTED, reason),
            ThreadReply(release.id, f"gate:{deployment_id}:rejected", text),
        ),
        refusal=reason,
    )


def _gate(outcome: Outcome, rollout: Rollout, text: str, *extra: Effect) -> Outcome:
    """`request_deploy`'s outcome for a rollout that gates a run: the thread says a run asks,
    and the run's own deployment replaces the one deploybot would have created."""
    said = f"{rollout.id}:{rollout.status.value}"
    effects: list[Effect] = []
    for effect in outcome.effects:
        if isinstance(effect, CreateDeployment):
            continue
        if isinstance(effect, ThreadReply) and effect.event.startswith(said):
            effect = replace(effect, text=text)
        effects.append(effect)
    return Outcome(rollouts=(rollout,), effects=(*effects, *extra))


def _answer(
    deployment_id: int, release: Release, environment: str, run_id: int, state: str, comment: str
) -> ReviewProtectionRule:
    return ReviewProtectionRule(
        repository=release.repository,
        run_id=run_id,
        deployment_id=deployment_id,
        environment=environment,
        state=state,
        comment=comment,
    )
