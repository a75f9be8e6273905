"""The release state machine, rule by rule (pure: no clock, database or network)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.pipeline.checks import Verdict
from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import (
    ApprovalRequest,
    CreateDeployment,
    PullRequestComment,
    RefreshBoard,
    ThreadReply,
)
from bot.pipeline.machine import (
    BOT,
    Release,
    decide,
    deployment_reported,
    probed,
    request_deploy,
)
from bot.pipeline.models import EnvironmentHistory, Evidence, Kind, Person, Rollout, Status

PIPELINE = parse_pipeline(
    """
environments:
  - name: stage
    health: {url: "http://stage.test/healthz", interval: 10s, soak: 1m, failures: 3}
  - name: production
    approvals: 2
    approvers: [bob, carol, U0DAVE]
    health: {url: "http://prod.test/healthz", interval: 10s, soak: 1m, failures: 2}
  - name: archive
    auto_rollback: false
"""
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SHA, OLD = "a" * 40, "b" * 40
RELEASE = Release(id=7, repository="acme/api", commit_sha=SHA, pr_number=42)
ALICE, BOB, CAROL = Person(github="alice"), Person(github="bob"), Person(github="carol")


def ask(environment: str, *, who: Person = ALICE, **kwargs) -> object:
    args = dict(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=who,
        target=EnvironmentHistory(),
        succeeded_here=frozenset({"stage"}),
        rollout_id=100,
        now=NOW,
    )
    return request_deploy(**{**args, **kwargs})


def rollout(environment: str = "production", status: Status = Status.AWAITING_APPROVAL, **kw):
    base = Rollout(
        id=100,
        repository="acme/api",
        environment=environment,
        commit_sha=SHA,
        status=status,
        requested_by=ALICE,
        created_at=NOW,
    )
    return replace(base, **kw)


def kinds(outcome) -> list[type]:
    return [type(effect) for effect in outcome.effects]


# --- requesting a deploy ---------------------------------------------------------------


def test_the_first_environment_deploys_at_once() -> None:
    outcome = ask("stage", succeeded_here=frozenset())
    (new,) = outcome.rollouts
    assert (new.status, new.environment, new.commit_sha, new.requested_by) == (
        Status.PENDING,
        "stage",
        SHA,
        ALICE,
    )
    (deployment,) = [e for e in outcome.effects if isinstance(e, CreateDeployment)]
    assert deployment.commit_sha == SHA and deployment.payload["rollout"] == 100
    assert RefreshBoard in kinds(outcome) and ThreadReply in kinds(outcome)


def test_an_environment_with_approvals_waits_for_them() -> None:
    outcome = ask("production")
    (new,) = outcome.rollouts
    assert new.status is Status.AWAITING_APPROVAL
    assert CreateDeployment not in kinds(outcome)
    (request,) = [e for e in outcome.effects if isinstance(e, ApprovalRequest)]
    assert request.approvals_needed == 2


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"environment": "prod"}, "not an environment"),
        ({"environment": "production", "succeeded_here": frozenset()}, "needs `stage`"),
        (
            {"target": EnvironmentHistory(lock_holder=BOB, lock_reason="db migration")},
            "locked by bob (db migration)",
        ),
        (
            {"target": EnvironmentHistory(active=rollout(status=Status.VERIFYING, commit_sha=OLD))},
            "busy",
        ),
    ],
)
def test_refusals_say_why_and_deploy_nothing(kwargs, says: str) -> None:
    outcome = ask(**{"environment": "production", **kwargs})
    assert outcome.refused and says in outcome.refusal
    assert outcome.rollouts == () and outcome.effects == ()


def test_the_lock_holder_may_still_deploy_and_force_skips_order_and_lock() -> None:
    locked = EnvironmentHistory(lock_holder=ALICE)
    assert not ask("production", target=locked).refused
    forced = ask(
        "production",
        target=EnvironmentHistory(lock_holder=BOB),
        succeeded_here=frozenset(),
        force=True,
    )
    assert not forced.refused


def test_environment_names_are_case_insensitive() -> None:
    (new,) = ask("STAGE", succeeded_here=frozenset()).rollouts
    assert new.environment == "stage"


# --- approvals -------------------------------------------------------------------------


def approve(r: Rollout, who: Person, *, authorised: bool = True, approve: bool = True, **kw):
    return decide(
        pipeline=PIPELINE,
        release=kw.pop("release", RELEASE),
        rollout=r,
        person=who,
        approve=approve,
        authorised=authorised,
        now=NOW,
        **kw,
    )


def test_two_distinct_approvers_start_the_deployment() -> None:
    first = approve(rollout(), BOB)
    (waiting,) = first.rollouts
    assert waiting.status is Status.AWAITING_APPROVAL and CreateDeployment not in kinds(first)
    second = approve(waiting, CAROL)
    (approved,) = second.rollouts
    assert approved.status is Status.PENDING
    assert [d.person for d in approved.approvals()] == [BOB, CAROL]
    assert CreateDeployment in kinds(second)


@pytest.mark.parametrize(
    ("who", "authorised", "says"),
    [
        (ALICE, True, "You asked for this deploy"),
        (Person(github="ALICE", slack="U0ALICE"), True, "You asked for this deploy"),
        (Person(github="mallory"), False, "not an approver"),
    ],
)
def test_requesters_and_outsiders_cannot_approve(who, authorised, says) -> None:
    outcome = approve(rollout(), who, authorised=authorised)
    assert outcome.refused and says in outcome.refusal
    assert outcome.rollouts == () and outcome.effects == ()


def test_a_person_counts_once_even_under_another_identity() -> None:
    (once,) = approve(rollout(), Person(github="bob", slack="U0BOB")).rollouts
    again = approve(once, Person(github="BOB"))
    assert again.refused and "already approved" in again.refusal


def test_reject_records_the_reason() -> None:
    (rejected,) = approve(rollout(), BOB, approve=False, reason="not during the sale").rollouts
    assert rejected.status is Status.REJECTED and rejected.note == "not during the sale"
    later = approve(rejected, CAROL)
    assert later.refused and "bob rejected it" in later.refusal


def test_a_decided_request_says_who_decided() -> None:
    decided = rollout(status=Status.VERIFYING, decisions=())
    assert "Nothing to decide" in approve(decided, BOB).refusal


def test_approvals_bind_to_the_commit_they_were_asked_for() -> None:
    moved = replace(RELEASE, commit_sha="c" * 40)
    outcome = approve(rollout(), BOB, release=moved)
    (cancelled,) = outcome.rollouts
    assert cancelled.status is Status.CANCELLED and "moved" in cancelled.note
    assert outcome.refused
    assert CreateDeployment not in kinds(outcome)


# --- deployment statuses ---------------------------------------------------------------


def report(r: Rollout, state: str, **kw):
    args = dict(
        pipeline=PIPELINE,
        release=RELEASE,
        rollout=r,
        state=state,
        now=NOW,
        last_good_sha=OLD,
        rollback_id=200,
    )
    return deployment_reported(**{**args, **kw})


def test_in_progress_then_success_enters_verifying() -> None:
    (running,) = report(rollout("stage", Status.PENDING), "in_progress").rollouts
    assert running.status is Status.IN_PROGRESS
    (verifying,) = report(running, "success").rollouts
    assert verifying.status is Status.VERIFYING and verifying.next_check_at == NOW


def test_success_without_health_checks_succeeds_at_once() -> None:
    (done,) = report(rollout("archive", Status.IN_PROGRESS), "success").rollouts
    assert done.status is Status.SUCCESS


@pytest.mark.parametrize("state", ["failure", "error"])
def test_a_failed_deploy_rolls_back_to_the_last_good_commit(state: str) -> None:
    outcome = report(rollout("stage", Status.IN_PROGRESS), state, description="image pull")
    failed, back = outcome.rollouts
    assert failed.status is Status.FAILURE and "image pull" in failed.note
    assert (back.kind, back.commit_sha, back.status, back.replaces, back.requested_by) == (
        Kind.ROLLBACK,
        OLD,
        Status.PENDING,
        100,
        BOT,
    )
    (deployment,) = [e for e in outcome.effects if isinstance(e, CreateDeployment)]
    assert deployment.commit_sha == OLD and deployment.rollout_id == 200


def test_late_reports_for_finished_rollouts_change_nothing() -> None:
    for status in (Status.SUCCESS, Status.FAILURE, Status.ROLLED_BACK, Status.CANCELLED):
        assert report(rollout("stage", status), "failure").rollouts == ()


def test_a_successful_rollback_marks_what_it_replaced_rolled_back() -> None:
    failed = rollout("stage", Status.FAILURE)
    back = rollout(
        "stage", Status.IN_PROGRESS, id=200, kind=Kind.ROLLBACK, commit_sha=OLD, replaces=100
    )
    outcome = report(back, "success", replaced=failed)
    done, undone = outcome.rollouts
    assert (done.status, undone.status) == (Status.SUCCESS, Status.ROLLED_BACK)


def test_no_rollback_without_an_earlier_good_commit_and_it_says_so() -> None:
    outcome = report(rollout("stage", Status.IN_PROGRESS), "failure", last_good_sha=None)
    (failed,) = outcome.rollouts
    assert failed.status is Status.FAILURE
    texts = [e.text for e in outcome.effects if isinstance(e, ThreadReply)]
    assert any("No automatic rollback" in t for t in texts)
    assert PullRequestComment in kinds(outcome)


def test_auto_rollback_false_fails_without_rolling_back() -> None:
    outcome = report(rollout("archive", Status.IN_PROGRESS), "failure")
    assert [r.status for r in outcome.rollouts] == [Status.FAILURE]
    assert CreateDeployment not in kinds(outcome)


# --- health probes ---------------------------------------------------------------------


def probe(r: Rollout, healthy: bool, at: datetime):
    return probed(
        pipeline=PIPELINE,
        release=RELEASE,
        rollout=r,
        evidence=Evidence(healthy, "HTTP 200" if healthy else "HTTP 503", at),
        now=at,
        last_good_sha=OLD,
        rollback_id=200,
    )


def test_healthy_for_the_whole_soak_succeeds() -> None:
    r = rollout("stage", Status.VERIFYING, next_check_at=NOW)
    t = NOW
    while r.status is Status.VERIFYING:
        (r,) = probe(r, True, t).rollouts[:1]
        t += timedelta(seconds=10)
        assert t <= NOW + timedelta(minutes=2), "should have succeeded after the 1m soak"
    assert r.status is Status.SUCCESS and t - NOW == timedelta(seconds=70)


def test_an_unhealthy_probe_restarts_the_soak() -> None:
    r = rollout("stage", Status.VERIFYING)
    (r,) = probe(r, True, NOW).rollouts
    (r,) = probe(r, False, NOW + timedelta(seconds=50)).rollouts
    assert r.healthy_since is None and r.failure_streak == 1
    (r,) = probe(r, True, NOW + timedelta(seconds=60)).rollouts
    assert r.status is Status.VERIFYING and r.failure_streak == 0


def test_consecutive_failures_fail_and_roll_back_with_evidence() -> None:
    r = rollout("stage", Status.VERIFYING)
    (r,) = probe(r, False, NOW).rollouts
    (r,) = probe(r, False, NOW + timedelta(seconds=10)).rollouts
    outcome = probe(r, False, NOW + timedelta(seconds=20))
    failed, back = outcome.rollouts
    assert failed.status is Status.FAILURE and back.kind is Kind.ROLLBACK
    texts = " ".join(e.text for e in outcome.effects if isinstance(e, ThreadReply))
    assert "3 health checks in a row failed" in texts and "HTTP 503" in texts


def test_probes_of_rollouts_not_verifying_are_ignored() -> None:
    assert probe(rollout("stage", Status.SUCCESS), False, NOW).rollouts == ()


def test_effect_keys_are_stable_for_the_same_decision() -> None:
    first, again = (
        ask("stage", succeeded_here=frozenset()),
        ask("stage", succeeded_here=frozenset()),
    )
    assert [e.key for e in first.effects] == [e.key for e in again.effects]
    assert len({e.key for e in first.effects}) == len(first.effects)


WINDOWED = parse_pipeline(
    """
environments:
  - name: production
    window: {days: mon-fri, hours: "09:00-16:00", timezone: Europe/Stockholm}
"""
)


@pytest.mark.parametrize(
    ("at", "refused"),
    [
        (datetime(2026, 11, 23, 9, 30, tzinfo=UTC), False),  # Monday 10:30 in Stockholm
        (datetime(2026, 11, 23, 15, 30, tzinfo=UTC), True),  # Monday 16:30 in Stockholm
        (datetime(2026, 11, 22, 10, 0, tzinfo=UTC), True),  # Sunday
    ],
)
def test_a_closed_window_refuses_unless_forced(at: datetime, refused: bool) -> None:
    args = dict(
        pipeline=WINDOWED,
        release=RELEASE,
        environment="production",
        requester=ALICE,
        target=EnvironmentHistory(),
        succeeded_here=frozenset(),
        rollout_id=1,
        now=at,
    )
    outcome = request_deploy(**args)
    assert outcome.refused is refused
    if refused:
        assert "outside its deploy window (Mon,Tue,Wed,Thu,Fri 09:00-16:00" in outcome.refusal
        assert "it opens next Mon 2026-11-23 09:00" in outcome.refusal or (
            "it opens next Tue 2026-11-24 09:00" in outcome.refusal
        )
        forced = request_deploy(**args, force=True)
        assert forced.overrides == ("the deploy window",)
        said = [e.text for e in forced.effects if isinstance(e, ThreadReply)]
        assert "alice used `--force` past the deploy window." in said


def test_force_names_everything_it_went_past() -> None:
    outcome = ask(
        "production",
        succeeded_here=frozenset(),
        target=EnvironmentHistory(lock_holder=BOB),
        checks=Verdict(failing=("lint",)),
        force=True,
    )
    assert outcome.overrides == (
        "the ordering rule (`stage` has not succeeded)",
        "its checks (failing: `lint`)",
        "the lock of bob",
    )
    said = [e.text for e in outcome.effects if isinstance(e, ThreadReply)]
    assert (
        "alice used `--force` past the ordering rule (`stage` has not succeeded), its checks "
        "(failing: `lint`) and the lock of bob." in said
    )
    assert ask("production").overrides == ()


# --- rollbacks on request --------------------------------------------------------------


def roll_back(current: Rollout, target: str | None = OLD):
    from bot.pipeline.machine import request_rollback

    return request_rollback(
        pipeline=PIPELINE,
        release=RELEASE,
        current=current,
        target_sha=target,
        requester=BOB,
        rollout_id=300,
        now=NOW,
    )


def test_a_rollback_on_request_redeploys_the_previous_good_commit() -> None:
    outcome = roll_back(rollout("production", Status.SUCCESS))
    (back,) = outcome.rollouts
    assert (back.kind, back.commit_sha, back.replaces, back.requested_by) == (
        Kind.ROLLBACK,
        OLD,
        100,
        BOB,
    )
    (deployment,) = [e for e in outcome.effects if isinstance(e, CreateDeployment)]
    assert deployment.commit_sha == OLD and deployment.payload["kind"] == "rollback"


def test_rolling_back_a_verifying_deploy_stops_it_first() -> None:
    stopped, back = roll_back(rollout("production", Status.VERIFYING)).rollouts
    assert stopped.status is Status.FAILURE and "bob asked for a rollback" in stopped.note
    assert back.status is Status.PENDING


def test_a_finished_rollback_can_be_rolled_back_further() -> None:
    # After a rollback to OLD succeeded, an older good commit may still be chosen.
    back = rollout("production", Status.SUCCESS, kind=Kind.ROLLBACK)
    (further,) = roll_back(back, "0" * 40).rollouts
    assert further.kind is Kind.ROLLBACK and further.commit_sha == "0" * 40


@pytest.mark.parametrize(
    ("current", "target", "says"),
    [
        (rollout("production", Status.SUCCESS), None, "no earlier successful commit"),
        (rollout("production", Status.SUCCESS), SHA, "no earlier successful commit"),
        (rollout("production", Status.IN_PROGRESS), OLD, "roll back once its deploy"),
        (rollout("production", Status.PENDING, kind=Kind.ROLLBACK), OLD, "already being rolled"),
    ],
)
def test_rollback_refusals(current: Rollout, target, says: str) -> None:
    outcome = roll_back(current, target)
    assert outcome.refused and says in outcome.refusal and outcome.rollouts == ()


def test_a_window_never_blocks_a_rollback() -> None:
    from bot.pipeline.machine import request_rollback

    closed = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # Sunday night in Stockholm
    current = rollout("production", Status.SUCCESS)
    outcome = request_rollback(
        pipeline=WINDOWED,
        release=RELEASE,
        current=current,
        target_sha=OLD,
        requester=BOB,
        rollout_id=300,
        now=closed,
    )
    assert not outcome.refused


def test_a_successful_manual_rollback_marks_the_good_deploy_rolled_back() -> None:
    undone_from = rollout("production", Status.SUCCESS)
    back = rollout(
        "production", Status.IN_PROGRESS, id=300, kind=Kind.ROLLBACK, commit_sha=OLD, replaces=100
    )
    done, undone = report(back, "success", replaced=undone_from).rollouts
    assert (done.status, undone.status) == (Status.SUCCESS, Status.ROLLED_BACK)


def test_an_approver_who_cannot_be_told_apart_from_the_requester_is_refused() -> None:
    # carol asked on GitHub; a Slack id that users: does not pair with a login clicks.
    asked_on_github = rollout(requested_by=Person(github="carol"))
    outcome = approve(asked_on_github, Person(slack="U0CAROL"))
    assert outcome.refused and "must be paired under `users:`" in outcome.refusal
    # Once paired, the same click is recognised as the requester's.
    paired = approve(asked_on_github, Person(github="carol", slack="U0CAROL"))
    assert "You asked for this deploy" in paired.refusal


def test_a_moved_head_cancels_only_requests_for_older_commits() -> None:
    from bot.pipeline.machine import head_moved

    moved = replace(RELEASE, commit_sha="c" * 40)
    (cancelled,) = head_moved(release=moved, rollout=rollout()).rollouts
    assert cancelled.status is Status.CANCELLED and "moved to ccccccc" in cancelled.note
    assert head_moved(release=RELEASE, rollout=rollout()).rollouts == ()
    assert head_moved(release=moved, rollout=rollout(status=Status.VERIFYING)).rollouts == ()
