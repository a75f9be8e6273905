"""The deploy queue in the pure core: `--queue` and `--wait` turn refusals into waiting,
a queued request starts when the rules let it, and an older commit is skipped once a newer
one that contains it succeeded."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline import queue
from bot.pipeline.checks import Verdict
from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import ApprovalRequest, CreateDeployment, RefreshBoard, ThreadReply
from bot.pipeline.machine import Release, request_deploy
from bot.pipeline.models import EnvironmentHistory, Person, Rollout, Status

PIPELINE = parse_pipeline(
    """
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [carol]
    window: {days: mon-fri, hours: "09:00-17:00", timezone: UTC}
"""
)
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SHA, NEWER = "a" * 40, "b" * 40
RELEASE = Release(id=7, repository="acme/api", commit_sha=SHA, pr_number=42)
ALICE, BOB = Person(github="alice"), Person(github="bob")
RUNNING = Rollout(
    id=50,
    repository="acme/api",
    environment="stage",
    commit_sha=NEWER,
    status=Status.VERIFYING,
    requested_by=BOB,
    created_at=MONDAY_NOON,
)
BUSY = EnvironmentHistory(active=RUNNING)
LOCKED = EnvironmentHistory(lock_holder=BOB, lock_reason="load test")
PENDING_CHECKS = Verdict(pending=("ci/build",))
FAILING_CHECKS = Verdict(failing=("lint",), pending=("ci/build",))


def ask(target=EnvironmentHistory(), *, environment="stage", now=MONDAY_NOON, **kwargs):
    return request_deploy(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=ALICE,
        target=target,
        succeeded_here=frozenset({"stage"}),
        rollout_id=100,
        now=now,
        **kwargs,
    )


def queued(**changes) -> Rollout:
    (rollout,) = ask(BUSY, queue=True).rollouts
    return replace(rollout, **changes)


def start(rollout: Rollout, target=EnvironmentHistory(), *, now=MONDAY_NOON, **kwargs):
    return queue.start(
        pipeline=PIPELINE,
        release=RELEASE,
        queued=rollout,
        target=target,
        succeeded_here=frozenset({"stage"}),
        now=now,
        **kwargs,
    )


def replies(outcome) -> str:
    return "\n".join(e.text for e in outcome.effects if isinstance(e, ThreadReply))


# --- waiting instead of a refusal -----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "kwargs", "waits_for"),
    [
        (BUSY, {"queue": True}, "bbbbbbb (verifying) to finish"),
        (LOCKED, {"queue": True}, "the lock of bob (load test)"),
        (EnvironmentHistory(waiting=2), {"queue": True}, "2 requests queued before it"),
        (
            EnvironmentHistory(),
            {"wait": True, "checks": PENDING_CHECKS},
            "its checks to finish (pending: `ci/build`)",
        ),
        (
            LOCKED,
            {"queue": True, "wait": True, "checks": PENDING_CHECKS},
            "its checks to finish (pending: `ci/build`) and the lock of bob (load test)",
        ),
    ],
)
def test_queue_and_wait_turn_a_refusal_into_waiting(target, kwargs, waits_for) -> None:
    outcome = ask(target, **kwargs)
    (rollout,) = outcome.rollouts
    assert rollout.status is Status.QUEUED and rollout.note == f"waiting for {waits_for}"
    assert rollout.wait_checks is kwargs.get("wait", False)
    assert f"alice queued aaaaaaa for `stage`: it waits for {waits_for}" in replies(outcome)
    assert not any(isinstance(e, CreateDeployment | ApprovalRequest) for e in outcome.effects)


@pytest.mark.parametrize(
    ("target", "kwargs", "said"),
    [
        (BUSY, {}, "or add `--queue` to deploy after it"),
        (LOCKED, {}, "or add `--queue` to deploy when it is unlocked"),
        (EnvironmentHistory(waiting=1), {}, "has 1 request queued before yours"),
        (EnvironmentHistory(), {"checks": PENDING_CHECKS}, "needs green checks"),
        (EnvironmentHistory(), {"wait": True, "checks": FAILING_CHECKS}, "needs green checks"),
        (BUSY, {"wait": True}, "or add `--queue` to deploy after it"),
    ],
)
def test_without_the_flag_or_with_failing_checks_it_is_refused(target, kwargs, said) -> None:
    outcome = ask(target, **kwargs)
    assert outcome.refused and said in (outcome.refusal or "")


def test_a_closed_window_is_refused_even_with_queue() -> None:
    outcome = ask(BUSY, environment="production", now=SATURDAY, queue=True)
    assert "outside its deploy window" in (outcome.refusal or "")


def test_force_is_kept_on_the_queued_request() -> None:
    (rollout,) = ask(BUSY, queue=True, force=True).rollouts
    assert rollout.forced and rollout.status is Status.QUEUED


# --- starting ---------------------------------------------------------------------------


def test_a_queued_request_starts_as_its_requester_asked_once_the_environment_is_free() -> None:
    waiting = queued(created_at=MONDAY_NOON - timedelta(hours=1))
    outcome = start(waiting)
    (started,) = outcome.rollouts
    assert (started.id, started.status, started.requested_by) == (100, Status.PENDING, ALICE)
    assert started.created_at == waiting.created_at  # its place in line is kept
    assert any(isinstance(e, CreateDeployment) for e in outcome.effects)
    assert "alice is deploying aaaaaaa to `stage`" in replies(outcome)


def test_a_queued_production_request_asks_for_approval_when_it_starts() -> None:
    (waiting,) = ask(BUSY, environment="production", queue=True).rollouts
    outcome = start(waiting)
    assert outcome.rollouts[0].status is Status.AWAITING_APPROVAL
    assert any(isinstance(e, ApprovalRequest) for e in outcome.effects)


@pytest.mark.parametrize(
    ("target", "kwargs"),
    [
        (BUSY, {}),
        (LOCKED, {}),
        (EnvironmentHistory(waiting=1), {}),
    ],
)
def test_a_request_that_must_still_wait_changes_nothing(target, kwargs) -> None:
    assert start(queued(), target, **kwargs) == queue.Outcome()


def test_one_waiting_for_checks_waits_while_they_are_pending_and_is_cancelled_if_they_fail():
    waiting = queued(wait_checks=True)
    assert start(waiting, checks=PENDING_CHECKS) == queue.Outcome()
    failed = start(waiting, checks=FAILING_CHECKS)
    (cancelled,) = failed.rollouts
    assert cancelled.status is Status.CANCELLED and "needs green checks" in (cancelled.note or "")
    assert "Cancelled the queued deploy of aaaaaaa to `stage`" in replies(failed)


def test_one_not_waiting_for_checks_is_cancelled_when_they_are_pending() -> None:
    (cancelled,) = start(queued(), checks=PENDING_CHECKS).rollouts
    assert cancelled.status is Status.CANCELLED


def test_a_rule_that_does_not_wait_cancels_it_with_the_reason() -> None:
    (waiting,) = ask(BUSY, environment="production", queue=True).rollouts
    outcome = start(waiting, now=SATURDAY)
    (cancelled,) = outcome.rollouts
    assert cancelled.status is Status.CANCELLED
    assert "outside its deploy window" in replies(outcome)
    assert any(isinstance(e, RefreshBoard) for e in outcome.effects)


def test_a_forced_request_goes_past_the_lock_when_the_environment_frees() -> None:
    (started,) = start(queued(forced=True), LOCKED).rollouts
    assert started.status is Status.PENDING


def test_a_newer_commit_that_succeeded_skips_it() -> None:
    outcome = start(queued(), superseded_by=NEWER)
    (skipped,) = outcome.rollouts
    assert skipped.status is Status.SKIPPED
    assert skipped.note == "skipped: bbbbbbb succeeded there and contains it"
    assert (
        "Skipped the queued deploy of aaaaaaa to `stage`: bbbbbbb, which contains it, "
        "succeeded there since." in replies(outcome)
    )


def test_a_pull_request_that_moved_on_cancels_it() -> None:
    moved = replace(RELEASE, commit_sha=NEWER)
    for outcome in (
        queue.head_moved(release=moved, rollout=queued()),
        queue.start(
            pipeline=PIPELINE,
            release=moved,
            queued=queued(),
            target=EnvironmentHistory(),
            succeeded_here=frozenset(),
            now=MONDAY_NOON,
        ),
    ):
        (cancelled,) = outcome.rollouts
        assert cancelled.status is Status.CANCELLED
        assert "the pull request moved on to bbbbbbb" in replies(outcome)
    assert queue.head_moved(release=RELEASE, rollout=queued()) == queue.Outcome()


def test_only_a_queued_request_starts() -> None:
    assert start(replace(queued(), status=Status.CANCELLED)) == queue.Outcome()


# --- ready, and automatic deploys -------------------------------------------------------


@pytest.mark.parametrize(
    ("rollout", "target", "expected"),
    [
        (queued(), EnvironmentHistory(), True),
        (queued(), BUSY, False),
        (queued(), LOCKED, False),
        (queued(forced=True), LOCKED, True),
        (queued(requested_by=BOB), LOCKED, True),  # the holder's own request
        (replace(queued(), status=Status.PENDING), EnvironmentHistory(), False),
    ],
)
def test_ready(rollout, target, expected) -> None:
    assert queue.ready(rollout, target) is expected


def test_an_automatic_deploy_waits_for_its_checks_in_the_queue() -> None:
    outcome = queue.for_checks(
        release=RELEASE, environment="stage", requester=ALICE, rollout_id=9, now=MONDAY_NOON
    )
    (rollout,) = outcome.rollouts
    assert (rollout.status, rollout.wait_checks, rollout.id) == (Status.QUEUED, True, 9)
    assert start(rollout, checks=Verdict()).rollouts[0].status is Status.PENDING


@settings(max_examples=200, deadline=None)
@given(
    busy=st.booleans(),
    locked=st.booleans(),
    ahead=st.integers(0, 3),
    forced=st.booleans(),
    checks=st.sampled_from([None, Verdict(), PENDING_CHECKS, FAILING_CHECKS]),
    superseded=st.booleans(),
)
def test_starting_never_takes_a_busy_environment_and_keeps_the_request_id(
    busy, locked, ahead, forced, checks, superseded
) -> None:
    target = EnvironmentHistory(
        active=RUNNING if busy else None,
        lock_holder=BOB if locked else None,
        waiting=ahead,
    )
    outcome = start(
        queued(forced=forced, wait_checks=True),
        target,
        checks=checks,
        superseded_by=NEWER if superseded else None,
    )
    for rollout in outcome.rollouts:
        assert rollout.id == 100
        if rollout.status.active:
            assert not busy and not superseded and (ahead == 0)
            assert forced or not locked
            assert forced or checks is None or checks.green


def test_a_request_that_can_never_start_is_cancelled_with_the_reason() -> None:
    outcome = queue.cancel(release=RELEASE, rollout=queued(), reason="GitHub said 404.")
    (cancelled,) = outcome.rollouts
    assert cancelled.status is Status.CANCELLED and cancelled.note == "GitHub said 404."
    assert "Cancelled the queued deploy of aaaaaaa to `stage`: GitHub said 404." in replies(outcome)
    assert queue.cancel(release=RELEASE, rollout=cancelled, reason="x") == queue.Outcome()
