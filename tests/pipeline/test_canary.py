"""Canary steps, pause, resume and promote in the pure core (no clock, database or network).

A canary deploy walks its `steps`: each is a GitHub deployment of its weight (task
`deploy:canary`, the last step `deploy`), verified for `pause` before the next starts, or
held at a `manual` step until someone promotes it. A failure at any step rolls back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.config import Pipeline, parse_pipeline
from bot.pipeline.effects import CreateDeployment, ThreadReply
from bot.pipeline.machine import (
    Outcome,
    Release,
    abandon,
    deployment_reported,
    pause,
    probed,
    promote_step,
    request_deploy,
    request_rollback,
    resume,
)
from bot.pipeline.models import EnvironmentHistory, Evidence, Kind, Person, Rollout, Status

PIPELINE = parse_pipeline(
    """
environments:
  - name: production
    health: {url: "http://prod.test/healthz", interval: 10s, soak: 1m, failures: 2}
    canary: {steps: [1, 10, {weight: 25, manual: true}, 50, 100], pause: 5m}
  - name: quiet
    canary: {steps: [20, 100], pause: 2m}
"""
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SHA, GOOD = "a" * 40, "b" * 40
RELEASE = Release(id=7, repository="acme/api", commit_sha=SHA, pr_number=42)
ALICE, BOB = Person(github="alice"), Person(github="bob")
PAUSE = timedelta(minutes=5)
HEALTHY = Evidence(True, "200 OK", NOW)
SICK = Evidence(False, "503", NOW, ((False, "http 503"),))


def start(environment: str = "production") -> Rollout:
    outcome = request_deploy(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=ALICE,
        target=EnvironmentHistory(),
        succeeded_here=frozenset({"production"}),
        rollout_id=100,
        now=NOW,
    )
    (rollout,) = outcome.rollouts
    return rollout


def report(
    rollout: Rollout,
    state: str,
    at: datetime,
    last_good: str | None = GOOD,
    *,
    pipeline: Pipeline = PIPELINE,
) -> Outcome:
    return deployment_reported(
        pipeline=pipeline,
        release=RELEASE,
        rollout=rollout,
        state=state,
        now=at,
        last_good_sha=last_good,
        rollback_id=200,
    )


def probe(
    rollout: Rollout,
    at: datetime,
    *,
    healthy: bool = True,
    last_good: str | None = GOOD,
    pipeline: Pipeline = PIPELINE,
    evidence: Evidence | None = None,
) -> Outcome:
    """A probe at `at`: healthy or sick by the HTTP check, or the `evidence` given."""
    seen = evidence or replace(HEALTHY if healthy else SICK, at=at)
    return probed(
        pipeline=pipeline,
        release=RELEASE,
        rollout=rollout,
        evidence=seen,
        now=at,
        last_good_sha=last_good,
        rollback_id=200,
    )


def give_up(rollout: Rollout, last_good: str | None = GOOD) -> Outcome:
    """GitHub refused the rollout's deployment for good."""
    return abandon(
        pipeline=PIPELINE,
        release=RELEASE,
        rollout=rollout,
        reason="GitHub refused it",
        last_good_sha=last_good,
        rollback_id=200,
        now=NOW,
    )


def deployments(outcome: Outcome) -> list[CreateDeployment]:
    return [e for e in outcome.effects if isinstance(e, CreateDeployment)]


def replies(outcome: Outcome) -> str:
    return "\n".join(e.text for e in outcome.effects if isinstance(e, ThreadReply))


def verified(rollout: Rollout, at: datetime) -> tuple[Outcome, datetime]:
    """Deploy the rollout's step, then probe it healthy until its pause has passed."""
    outcome = report(rollout, "success", at)
    current = outcome.rollouts[0]
    assert current.status is Status.VERIFYING
    first = at
    while True:
        outcome = probe(current, first)
        current = outcome.rollouts[0]
        if current.status is not Status.VERIFYING or current.held_at is not None:
            return outcome, first
        first = current.next_check_at or first + timedelta(seconds=10)


# --- the first step -------------------------------------------------------------------


def test_a_canary_deploy_starts_at_its_first_weight_as_a_canary_deployment() -> None:
    outcome = request_deploy(
        pipeline=PIPELINE,
        release=RELEASE,
        environment="production",
        requester=ALICE,
        target=EnvironmentHistory(),
        succeeded_here=frozenset({"production"}),
        rollout_id=100,
        now=NOW,
    )
    (rollout,) = outcome.rollouts
    assert (rollout.status, rollout.step, rollout.weight) == (Status.PENDING, 0, 1)
    (deployment,) = deployments(outcome)
    assert deployment.task == "deploy:canary"
    assert deployment.payload | {} == {
        "rollout": 100,
        "kind": "deploy",
        "requested_by": "alice",
        "weight": 1,
        "step": 0,
    }
    assert "at 1% (canary)" in replies(outcome)


def test_a_plain_environment_deploys_without_weight() -> None:
    plain = parse_pipeline("environments: [{name: dev}]")
    outcome = request_deploy(
        pipeline=plain,
        release=RELEASE,
        environment="dev",
        requester=ALICE,
        target=EnvironmentHistory(),
        succeeded_here=frozenset(),
        rollout_id=100,
        now=NOW,
    )
    (deployment,) = deployments(outcome)
    assert (deployment.task, deployment.step) == ("deploy", None)
    assert "weight" not in deployment.payload
    assert deployment.key == "deployment:100:deploy"


# --- steps ----------------------------------------------------------------------------


def test_a_verified_step_starts_the_next_weight_as_a_new_deployment() -> None:
    rollout = start()
    outcome = report(rollout, "success", NOW)
    verifying = outcome.rollouts[0]
    assert verifying.status is Status.VERIFYING and verifying.next_check_at == NOW
    assert "at 1% (step 1 of 5)" in replies(outcome)
    # Healthy, but not for the whole pause yet: check again after the interval.
    early = probe(verifying, NOW)
    assert early.rollouts[0].status is Status.VERIFYING
    assert early.rollouts[0].next_check_at == NOW + timedelta(seconds=10)
    assert not deployments(early)
    late = probe(early.rollouts[0], NOW + PAUSE)
    moved = late.rollouts[0]
    assert (moved.status, moved.step, moved.weight) == (Status.PENDING, 1, 10)
    assert moved.deployment_id is None and moved.healthy_since is None
    (deployment,) = deployments(late)
    assert deployment.task == "deploy:canary" and deployment.payload["weight"] == 10
    assert "going to 10% (step 2 of 5)" in replies(late)


def test_a_manual_step_holds_until_someone_promotes_it() -> None:
    rollout = replace(start(), step=2, weight=25)
    outcome, at = verified(rollout, NOW)
    held = outcome.rollouts[0]
    assert held.status is Status.VERIFYING and held.held_at == at
    assert not deployments(outcome)
    assert "holds at 25%" in replies(outcome)
    # It keeps being probed while it holds, and stays held without saying it again.
    again = probe(held, at + timedelta(seconds=10))
    assert again.rollouts[0].held_at == at and not again.effects
    promoted = promote_step(
        pipeline=PIPELINE, release=RELEASE, rollout=held, person=BOB, now=at + PAUSE
    )
    moved = promoted.rollouts[0]
    assert (moved.status, moved.step, moved.weight, moved.held_at) == (
        Status.PENDING,
        3,
        50,
        None,
    )
    assert deployments(promoted)[0].payload["weight"] == 50
    assert "promoted by bob" in replies(promoted)


def test_a_held_step_fails_like_any_other_when_health_fails() -> None:
    rollout = replace(start(), step=2, weight=25)
    outcome, at = verified(rollout, NOW)
    held = outcome.rollouts[0]
    first = probe(held, at + timedelta(seconds=10), healthy=False)
    second = probe(first.rollouts[0], at + timedelta(seconds=20), healthy=False)
    failed, rollback = second.rollouts
    assert failed.status is Status.FAILURE
    assert (rollback.kind, rollback.commit_sha) == (Kind.ROLLBACK, GOOD)


def test_promote_is_refused_before_the_step_is_verified_and_while_paused() -> None:
    rollout = replace(start(), step=2, weight=25)
    verifying = report(rollout, "success", NOW).rollouts[0]
    early = promote_step(pipeline=PIPELINE, release=RELEASE, rollout=verifying, person=BOB, now=NOW)
    assert early.refused and "once that step has been healthy for 5m" in (early.refusal or "")
    outcome, at = verified(rollout, NOW)
    paused = pause(release=RELEASE, rollout=outcome.rollouts[0], person=BOB, now=at).rollouts[0]
    refused = promote_step(pipeline=PIPELINE, release=RELEASE, rollout=paused, person=BOB, now=at)
    assert refused.refused and "paused" in (refused.refusal or "")


def test_promote_is_refused_for_a_rollout_that_is_no_canary_step() -> None:
    last = replace(start(), step=4, weight=100, status=Status.VERIFYING)
    refused = promote_step(pipeline=PIPELINE, release=RELEASE, rollout=last, person=BOB, now=NOW)
    assert refused.refusal == "`production` has no canary step to promote."


def test_the_last_step_is_a_plain_deploy_verified_by_the_soak() -> None:
    rollout = replace(start(), step=4, weight=100)
    outcome = report(rollout, "success", NOW)
    verifying = outcome.rollouts[0]
    assert verifying.status is Status.VERIFYING and "checking its health for 1m" in replies(outcome)
    done = probe(probe(verifying, NOW).rollouts[0], NOW + timedelta(minutes=1))
    assert done.rollouts[0].status is Status.SUCCESS
    last = replace(start(), step=3, weight=50)
    moved = probe(report(last, "success", NOW).rollouts[0], NOW)
    moved = probe(moved.rollouts[0], NOW + PAUSE)
    (deployment,) = deployments(moved)
    assert (deployment.task, deployment.payload["weight"]) == ("deploy", 100)


def test_without_health_checks_a_step_waits_its_pause() -> None:
    rollout = start("quiet")
    outcome = report(rollout, "success", NOW)
    waiting = outcome.rollouts[0]
    assert waiting.next_check_at == NOW + timedelta(minutes=2)
    assert "waiting for 2m before the next step" in replies(outcome)
    quiet = Evidence(True, "no health checks configured", NOW + timedelta(minutes=2))
    moved = probe(waiting, quiet.at, evidence=quiet, last_good=None)
    assert (moved.rollouts[0].step, moved.rollouts[0].weight) == (1, 100)
    assert deployments(moved)[0].task == "deploy"
    # The last step has no health to soak: its success is the rollout's.
    assert report(moved.rollouts[0], "success", quiet.at).rollouts[0].status is Status.SUCCESS


def test_every_step_says_so_once_and_deploys_once() -> None:
    """Keys are the outbox's idempotency: a step's replies and deployment must not collide
    with an earlier step's, or they would be dropped as already sent."""
    rollout, at, keys = start(), NOW, []
    while True:
        outcome, at = verified(rollout, at)
        keys += [effect.key for effect in outcome.effects]
        current = outcome.rollouts[0]
        if current.held_at is not None:
            outcome = promote_step(
                pipeline=PIPELINE, release=RELEASE, rollout=current, person=BOB, now=at
            )
            keys += [effect.key for effect in outcome.effects]
            current = outcome.rollouts[0]
        if current.status is Status.SUCCESS:
            break
        rollout, at = current, at + timedelta(seconds=1)
    assert len(keys) == len(set(keys))
    weights = [k for k in keys if k.startswith("deployment:")]
    assert weights == [
        "deployment:100:deploy:canary:1:10",
        "deployment:100:deploy:canary:2:25",
        "deployment:100:deploy:canary:3:50",
        "deployment:100:deploy:4:100",
    ]


# --- failure --------------------------------------------------------------------------


def test_a_failure_at_25_percent_rolls_back_to_the_previous_good_commit() -> None:
    rollout = replace(start(), step=2, weight=25)
    outcome = report(rollout, "failure", NOW)
    failed, rollback = outcome.rollouts
    assert failed.status is Status.FAILURE and failed.weight == 25
    assert (rollback.kind, rollback.commit_sha, rollback.step) == (Kind.ROLLBACK, GOOD, None)
    (deployment,) = deployments(outcome)
    assert (deployment.task, deployment.commit_sha) == ("deploy", GOOD)


def test_a_failed_canary_with_nothing_to_go_back_to_goes_to_weight_zero() -> None:
    rollout = replace(start(), step=1, weight=10, status=Status.VERIFYING)
    outcome = probe(
        probe(rollout, NOW, healthy=False, last_good=None).rollouts[0],
        NOW,
        healthy=False,
        last_good=None,
    )
    (failed,) = outcome.rollouts
    assert failed.status is Status.FAILURE
    (abort,) = deployments(outcome)
    assert (abort.task, abort.payload["weight"], abort.commit_sha) == ("deploy:canary", 0, SHA)
    assert abort.key == "deployment:100:deploy:canary:1:0"
    assert "back to 0%" in replies(outcome)


def test_a_canary_between_steps_can_be_rolled_back() -> None:
    running = replace(start(), step=2, weight=25, status=Status.IN_PROGRESS)
    outcome = request_rollback(
        pipeline=PIPELINE,
        release=RELEASE,
        current=running,
        target_sha=GOOD,
        requester=BOB,
        rollout_id=200,
        now=NOW,
    )
    stopped, rollback = outcome.rollouts
    assert stopped.status is Status.FAILURE and rollback.commit_sha == GOOD
    first = replace(start(), status=Status.IN_PROGRESS)
    refused = request_rollback(
        pipeline=PIPELINE,
        release=RELEASE,
        current=first,
        target_sha=GOOD,
        requester=BOB,
        rollout_id=200,
        now=NOW,
    )
    assert refused.refused


# --- pause and resume -----------------------------------------------------------------


def test_pause_stops_the_timer_and_resume_continues_it() -> None:
    verifying = probe(report(start(), "success", NOW).rollouts[0], NOW).rollouts[0]
    two_minutes = NOW + timedelta(minutes=2)
    outcome = pause(release=RELEASE, rollout=verifying, person=BOB, now=two_minutes)
    paused = outcome.rollouts[0]
    assert paused.paused_at == two_minutes and paused.next_check_at is None
    assert paused.note == "paused by bob" and "/deploy resume production" in replies(outcome)
    # A probe that was already due changes nothing while paused.
    assert probe(paused, two_minutes + PAUSE) == Outcome()
    hour_later = two_minutes + timedelta(hours=1)
    resumed = resume(release=RELEASE, rollout=paused, person=BOB, now=hour_later).rollouts[0]
    assert resumed.paused_at is None and resumed.note is None
    assert resumed.next_check_at == hour_later
    # 2 of the 5 minutes were verified before the pause: 3 remain after it.
    assert probe(resumed, hour_later + timedelta(minutes=2)).rollouts[0].step == 0
    assert probe(resumed, hour_later + timedelta(minutes=3)).rollouts[0].step == 1


def test_a_rollout_paused_while_deploying_waits_for_resume_after_success() -> None:
    paused = pause(release=RELEASE, rollout=start(), person=BOB, now=NOW).rollouts[0]
    verifying = report(paused, "success", NOW).rollouts[0]
    assert verifying.status is Status.VERIFYING and verifying.next_check_at is None
    resumed = resume(release=RELEASE, rollout=verifying, person=BOB, now=NOW + PAUSE)
    assert resumed.rollouts[0].next_check_at == NOW + PAUSE


def test_pause_and_resume_refuse_what_they_cannot_do() -> None:
    done = replace(start(), status=Status.SUCCESS)
    assert "Nothing to pause" in (
        pause(release=RELEASE, rollout=done, person=BOB, now=NOW).refusal or ""
    )
    waiting = replace(start(), status=Status.AWAITING_APPROVAL)
    assert pause(release=RELEASE, rollout=waiting, person=BOB, now=NOW).refused
    rollback = replace(start(), kind=Kind.ROLLBACK)
    assert pause(release=RELEASE, rollout=rollback, person=BOB, now=NOW).refused
    paused = pause(release=RELEASE, rollout=start(), person=BOB, now=NOW).rollouts[0]
    again = pause(release=RELEASE, rollout=paused, person=ALICE, now=NOW)
    assert again.refusal == "`production` is already paused (paused by bob)."
    assert resume(release=RELEASE, rollout=start(), person=BOB, now=NOW).refusal == (
        "`production` is not paused."
    )


def test_a_failure_reported_while_paused_still_rolls_back() -> None:
    paused = pause(release=RELEASE, rollout=start(), person=BOB, now=NOW).rollouts[0]
    outcome = report(paused, "failure", NOW)
    assert [r.status for r in outcome.rollouts] == [Status.FAILURE, Status.PENDING]


# --- properties -----------------------------------------------------------------------

_EVENTS = st.lists(
    st.sampled_from(["success", "failure", "healthy", "sick", "pause", "resume", "promote"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events=_EVENTS)
def test_a_canary_only_moves_up_its_steps_and_never_repeats_an_effect(events) -> None:
    """Whatever happens in whatever order: the weight only grows along the configured steps,
    each deployment and reply is asked for once, and a finished rollout stays finished."""
    steps = [1, 10, 25, 50, 100]
    rollout, at = start(), NOW
    keys: list[str] = []
    for event in events:
        at += timedelta(minutes=3)
        if event in {"success", "failure"}:
            outcome = report(rollout, event, at)
        elif event in {"healthy", "sick"}:
            outcome = probe(rollout, at, healthy=event == "healthy")
        elif event == "pause":
            outcome = pause(release=RELEASE, rollout=rollout, person=BOB, now=at)
        elif event == "resume":
            outcome = resume(release=RELEASE, rollout=rollout, person=BOB, now=at)
        else:
            outcome = promote_step(
                pipeline=PIPELINE, release=RELEASE, rollout=rollout, person=BOB, now=at
            )
        keys += [effect.key for effect in outcome.effects]
        mine = [r for r in outcome.rollouts if r.id == rollout.id]
        if not mine:
            continue
        after = mine[0]
        if not rollout.status.active:
            assert after == rollout
        assert after.weight is not None and after.weight >= (rollout.weight or 0)
        assert after.step is not None and steps[after.step] == after.weight
        if after.step > (rollout.step or 0):
            assert after.step == (rollout.step or 0) + 1 and after.status is Status.PENDING
        rollout = after
    assert len(keys) == len(set(keys))


# --- what the review found ------------------------------------------------------------


def test_a_step_the_pipeline_file_no_longer_has_finishes_with_a_full_deploy() -> None:
    shortened = parse_pipeline(
        """
environments:
  - name: production
    canary: {steps: [1, 100], pause: 5m}
"""
    )
    at_25 = replace(start(), step=2, weight=25)
    outcome = report(at_25, "success", NOW, pipeline=shortened)
    (moved,) = outcome.rollouts
    assert (moved.status, moved.step, moved.weight) == (Status.PENDING, 3, 100)
    (deployment,) = deployments(outcome)
    assert (deployment.task, deployment.payload["weight"]) == ("deploy", 100)
    plain = parse_pipeline("environments: [{name: production}]")
    verifying = replace(at_25, status=Status.VERIFYING)
    again = probe(verifying, NOW, pipeline=plain)
    assert again.rollouts[0].weight == 100 and deployments(again)[0].task == "deploy"


def test_a_held_step_that_fails_a_check_is_no_longer_promotable() -> None:
    outcome, at = verified(replace(start(), step=2, weight=25), NOW)
    held = outcome.rollouts[0]
    sick = probe(held, at + timedelta(seconds=10), healthy=False).rollouts[0]
    assert sick.status is Status.VERIFYING and sick.held_at is None
    refused = promote_step(pipeline=PIPELINE, release=RELEASE, rollout=sick, person=BOB, now=at)
    assert refused.refused


def test_a_refused_step_with_traffic_rolls_back_but_a_refused_first_step_just_fails() -> None:
    at_10 = replace(start(), step=1, weight=10)
    outcome = give_up(at_10)
    failed, rollback = outcome.rollouts
    assert failed.status is Status.FAILURE and rollback.commit_sha == GOOD
    first = give_up(start())
    assert [r.status for r in first.rollouts] == [Status.FAILURE]


def test_a_step_deployed_while_paused_waits_its_whole_pause_after_the_resume() -> None:
    paused = pause(release=RELEASE, rollout=start("quiet"), person=BOB, now=NOW).rollouts[0]
    deployed = report(paused, "success", NOW + timedelta(minutes=10)).rollouts[0]
    assert deployed.healthy_since is None and deployed.next_check_at is None
    back = NOW + timedelta(minutes=20)
    resumed = resume(release=RELEASE, rollout=deployed, person=BOB, now=back).rollouts[0]
    quiet = Evidence(True, "no health checks configured", back)
    first = probe(resumed, back, evidence=quiet, last_good=None).rollouts[0]
    assert first.step == 0 and first.next_check_at == back + timedelta(minutes=2)


def test_a_refused_step_with_nothing_to_go_back_to_takes_the_live_weight_to_zero() -> None:
    at_100 = replace(start(), step=4, weight=100)  # GitHub refused the last step
    outcome = give_up(at_100, last_good=None)
    (failed,) = outcome.rollouts
    assert failed.status is Status.FAILURE and (failed.step, failed.weight) == (3, 50)
    (abort,) = deployments(outcome)
    assert (abort.payload["weight"], abort.step) == (0, 3)


def test_a_paused_canary_whose_step_was_dropped_waits_for_the_resume() -> None:
    plain = parse_pipeline("environments: [{name: production}]")
    paused = pause(release=RELEASE, rollout=start(), person=BOB, now=NOW).rollouts[0]
    outcome = report(paused, "success", NOW, pipeline=plain)
    (waiting,) = outcome.rollouts
    assert waiting.status is Status.VERIFYING and not deployments(outcome)
    resumed = resume(release=RELEASE, rollout=waiting, person=BOB, now=NOW).rollouts[0]
    again = probe(resumed, NOW, pipeline=plain)
    assert deployments(again)[0].payload["weight"] == 100
