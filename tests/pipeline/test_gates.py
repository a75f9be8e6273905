"""deploybot as a GitHub Actions deployment protection rule, rule by rule (pure), and the
invariants that tie it to `request_deploy` (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import (
    ApprovalRequest,
    CreateDeployment,
    RefreshBoard,
    ReviewProtectionRule,
    ThreadReply,
)
from bot.pipeline.freezes import Freeze
from bot.pipeline.gates import requested
from bot.pipeline.machine import (
    Release,
    decide,
    deployment_reported,
    head_moved,
    request_deploy,
)
from bot.pipeline.models import EnvironmentHistory, Person, Rollout, Status

PIPELINE = parse_pipeline(
    """
environments:
  - name: stage
  - name: production
    approvals: 2
    approvers: [bob, carol]
    window: {days: mon-fri, hours: "09:00-16:00", timezone: UTC}
    canary: {steps: [10, 100], pause: 1m}
"""
)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday, inside the window
SHA, OLD = "c0ffee" + "1" * 34, "0bad00" + "2" * 34
RELEASE = Release(id=7, repository="acme/api", commit_sha=SHA, pr_number=42)
ALICE, BOB, CAROL = Person(github="alice"), Person(github="bob"), Person(github="carol")
RUN, DEPLOYMENT, ROLLOUT = 9001, 555, 31


def gate(environment: str = "production", **kwargs):
    args = dict(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=ALICE,
        target=EnvironmentHistory(),
        succeeded_here=frozenset({"stage"}),
        freeze=None,
        run_id=RUN,
        deployment_id=DEPLOYMENT,
        rollout_id=ROLLOUT,
        now=NOW,
    )
    return requested(**{**args, **kwargs})


def answers(outcome) -> list[ReviewProtectionRule]:
    return [e for e in outcome.effects if isinstance(e, ReviewProtectionRule)]


def replies(outcome) -> list[str]:
    return [e.text for e in outcome.effects if isinstance(e, ThreadReply)]


def running(sha: str = OLD, status: Status = Status.IN_PROGRESS, **kw) -> Rollout:
    base = Rollout(
        id=3,
        repository="acme/api",
        environment="production",
        commit_sha=sha,
        status=status,
        requested_by=BOB,
        created_at=NOW - timedelta(minutes=5),
        deployment_id=444,
    )
    return replace(base, **kw)


# --- an environment with approvals -----------------------------------------------------


def test_approvals_needed_hold_the_run_with_the_usual_request() -> None:
    outcome = gate()
    (rollout,) = outcome.rollouts
    assert rollout.status is Status.AWAITING_APPROVAL
    assert (rollout.gate_run_id, rollout.deployment_id) == (RUN, DEPLOYMENT)
    assert (rollout.id, rollout.commit_sha, rollout.requested_by) == (ROLLOUT, SHA, ALICE)
    # Actions deploys the whole commit its own way: no canary steps on a gated rollout.
    assert (rollout.step, rollout.weight) == (None, None)
    assert answers(outcome) == []  # the run keeps waiting
    assert not any(isinstance(e, CreateDeployment) for e in outcome.effects)
    (request,) = [e for e in outcome.effects if isinstance(e, ApprovalRequest)]
    assert request == ApprovalRequest(7, ROLLOUT, "production", "alice", 2)
    assert replies(outcome) == [
        f"GitHub Actions run {RUN} asks to deploy c0ffee1 to `production` for alice: "
        "waiting for 2 approvals."
    ]
    assert any(isinstance(e, RefreshBoard) for e in outcome.effects)


def test_the_approvers_decision_answers_the_run() -> None:
    (waiting,) = gate().rollouts
    args = dict(pipeline=PIPELINE, release=RELEASE, authorised=True, now=NOW)
    once = decide(rollout=waiting, person=BOB, approve=True, **args)
    assert answers(once) == []  # 1 of 2
    (half,) = once.rollouts
    both = decide(rollout=half, person=CAROL, approve=True, **args)
    (answer,) = answers(both)
    assert (answer.run_id, answer.environment, answer.state) == (RUN, "production", "approved")
    assert "bob" in answer.comment and "carol" in answer.comment
    assert not any(isinstance(e, CreateDeployment) for e in both.effects)
    (approved,) = both.rollouts
    assert approved.status is Status.PENDING and approved.deployment_id == DEPLOYMENT


def test_the_requester_cannot_approve_the_run_they_started() -> None:
    (waiting,) = gate().rollouts
    outcome = decide(
        pipeline=PIPELINE,
        release=RELEASE,
        rollout=waiting,
        person=ALICE,
        approve=True,
        authorised=True,
        now=NOW,
    )
    assert outcome.refused and answers(outcome) == []


def test_a_pull_request_that_moves_on_rejects_the_waiting_run() -> None:
    (waiting,) = gate().rollouts
    moved = replace(RELEASE, commit_sha="d" * 40)
    (answer,) = answers(head_moved(release=moved, rollout=waiting))
    assert answer.state == "rejected" and answer.run_id == RUN


# --- nothing to wait for ---------------------------------------------------------------


def test_an_environment_without_approvals_is_approved_at_once() -> None:
    outcome = gate("stage", succeeded_here=frozenset())
    (rollout,) = outcome.rollouts
    assert rollout.status is Status.PENDING
    assert (rollout.deployment_id, rollout.gate_run_id) == (DEPLOYMENT, RUN)
    (answer,) = answers(outcome)
    assert answer == ReviewProtectionRule(
        repository="acme/api",
        run_id=RUN,
        deployment_id=DEPLOYMENT,
        environment="stage",
        state="approved",
        comment="Approved by deploybot for alice: `stage` needs no approval.",
    )
    assert not any(isinstance(e, CreateDeployment) for e in outcome.effects)
    assert replies(outcome) == [
        f"GitHub Actions run {RUN} asks to deploy c0ffee1 to `stage` for alice: approved, "
        "no approval needed."
    ]


def test_environment_names_match_as_github_does_ignoring_case() -> None:
    (rollout,) = gate("Stage").rollouts
    assert rollout.environment == "stage"


# --- refused ---------------------------------------------------------------------------

FROZEN = Freeze("acme/api", BOB, "release week", NOW + timedelta(days=1), NOW)


@pytest.mark.parametrize(
    ("environment", "change", "says"),
    [
        (
            "qa",
            {},
            "`qa` is not an environment in deploybot's pipeline file (it has `stage`, "
            "`production`), so deploybot cannot approve deploys to it. Add it there, or remove "
            "deploybot from the environment's protection rules.",
        ),
        ("production", {"succeeded_here": frozenset()}, "needs `stage` to succeed for c0ffee1"),
        ("production", {"now": NOW + timedelta(hours=6)}, "outside its deploy window"),
        ("production", {"now": NOW + timedelta(days=5)}, "outside its deploy window"),  # Sat
        (
            "production",
            {"target": EnvironmentHistory(lock_holder=BOB, lock_reason="db migration")},
            "`production` is locked by bob (db migration)",
        ),
        ("production", {"target": EnvironmentHistory(active=running())}, "`production` is busy"),
        ("stage", {"freeze": FROZEN}, "release week"),
    ],
)
def test_a_refusal_rejects_the_run_with_the_reason_and_holds_nothing(
    environment: str, change: dict, says: str
) -> None:
    outcome = gate(environment, **change)
    assert outcome.rollouts == ()
    (answer,) = answers(outcome)
    assert answer.state == "rejected" and answer.run_id == RUN
    assert says in answer.comment
    assert answer.environment.lower() == environment.lower()
    # No rollout to name: the answer is keyed by the deployment, once per deployment.
    assert answer.deployment_id == DEPLOYMENT
    (text,) = replies(outcome)
    assert text.startswith(
        f"GitHub Actions run {RUN} asked to deploy c0ffee1 to `{environment}`; deploybot "
        "rejected it: "
    )
    assert says in text


def test_the_lock_holder_may_deploy_through_a_gate() -> None:
    locked = EnvironmentHistory(lock_holder=Person(github="ALICE"), lock_reason="mine")
    (rollout,) = gate(target=locked).rollouts
    assert rollout.status is Status.AWAITING_APPROVAL


def test_an_unknown_environment_is_refused_before_anything_else() -> None:
    outcome = gate("qa", freeze=FROZEN, succeeded_here=frozenset())
    assert "not an environment in deploybot's pipeline file" in answers(outcome)[0].comment


# --- deploybot's own deploy, carried out by a protected job ----------------------------


@pytest.mark.parametrize("status", [Status.PENDING, Status.IN_PROGRESS])
def test_a_run_carrying_out_deploybots_own_deploy_is_approved(status: Status) -> None:
    ours = running(SHA, status, gate_run_id=None)
    outcome = gate(target=EnvironmentHistory(active=ours))
    assert outcome.rollouts == ()
    (answer,) = answers(outcome)
    assert answer.state == "approved" and answer.deployment_id == DEPLOYMENT
    assert "deploybot already started this deploy of c0ffee1 to `production`" in answer.comment


@pytest.mark.parametrize(
    "other",
    [
        running(OLD, Status.IN_PROGRESS),  # another commit
        running(SHA, Status.AWAITING_APPROVAL),  # not decided yet
        running(SHA, Status.VERIFYING),  # already deployed
        running(SHA, Status.PENDING, gate_run_id=77),  # another run's gate
    ],
)
def test_anything_else_holding_the_environment_refuses_the_run(other: Rollout) -> None:
    (answer,) = answers(gate(target=EnvironmentHistory(active=other)))
    assert answer.state == "rejected" and "busy" in answer.comment


# --- invariants ------------------------------------------------------------------------

PEOPLE = [ALICE, BOB, Person(github="bob", slack="U0BOB"), Person(slack="U0CAROL")]


@given(
    environment=st.sampled_from(["stage", "production", "PRODUCTION", "qa"]),
    requester=st.sampled_from(PEOPLE),
    succeeded=st.sets(st.sampled_from(["stage", "production"])).map(frozenset),
    hours=st.integers(min_value=0, max_value=24 * 7),
    holder=st.one_of(st.none(), st.sampled_from(PEOPLE)),
    active=st.one_of(
        st.none(),
        st.builds(
            running,
            sha=st.sampled_from([SHA, OLD]),
            status=st.sampled_from([s for s in Status if s.active]),
            gate_run_id=st.sampled_from([None, 77]),
        ),
    ),
    frozen=st.booleans(),
)
def test_a_gate_decides_as_a_deploy_request_would(
    environment, requester, succeeded, hours, holder, active, frozen
) -> None:
    now = NOW + timedelta(hours=hours)
    facts = dict(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=requester,
        target=EnvironmentHistory(active=active, lock_holder=holder),
        succeeded_here=succeeded,
        rollout_id=ROLLOUT,
        now=now,
        freeze=FROZEN if frozen else None,
    )
    outcome = requested(run_id=RUN, deployment_id=DEPLOYMENT, **facts)
    asked = request_deploy(**facts)
    gate_answers = answers(outcome)
    # A gate never creates a deployment of its own: the waiting run deploys.
    assert not any(isinstance(e, CreateDeployment) for e in outcome.effects)
    # The run is answered now, or a rollout holds it until people decide: never both.
    assert len(gate_answers) + len(outcome.rollouts) >= 1
    assert len(gate_answers) <= 1
    for rollout in outcome.rollouts:
        assert (rollout.gate_run_id, rollout.deployment_id) == (RUN, DEPLOYMENT)
        assert rollout.status in {Status.AWAITING_APPROVAL, Status.PENDING}
        assert (rollout.status is Status.PENDING) == bool(gate_answers)
    approved = [a for a in gate_answers if a.state == "approved"]
    if asked.refused:
        # Only deploybot's own running deploy of this commit lets a refused request through.
        assert outcome.rollouts == ()
        if approved:
            assert active is not None and active.commit_sha == SHA and active.gate_run_id is None
    else:
        assert [r.status for r in outcome.rollouts] == [r.status for r in asked.rollouts]
    if approved and outcome.rollouts:
        (rollout,) = outcome.rollouts
        assert PIPELINE.environment(rollout.environment).approvals == 0


def test_a_run_that_stops_waiting_cancels_its_request_and_rolls_nothing_back() -> None:
    (waiting,) = gate("production").rollouts
    assert waiting.status is Status.AWAITING_APPROVAL
    outcome = deployment_reported(
        pipeline=PIPELINE,
        release=RELEASE,
        rollout=waiting,
        state="failure",
        now=NOW,
        last_good_sha="b" * 40,
        rollback_id=999,
    )
    (cancelled,) = outcome.rollouts
    assert cancelled.status is Status.CANCELLED
    assert not answers(outcome)
    assert not any(isinstance(e, CreateDeployment) for e in outcome.effects)
