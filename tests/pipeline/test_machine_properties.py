"""Invariants of the state machine under any sequence of events (hypothesis).

A small in-memory world plays the caller's part: it keeps the rollouts, tells the core what
holds each environment and what last succeeded there, and applies every outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import CreateDeployment, ThreadReply
from bot.pipeline.machine import Release, decide, deployment_reported, probed, request_deploy
from bot.pipeline.models import EnvironmentHistory, Evidence, Kind, Person, Rollout, Status

PIPELINE = parse_pipeline(
    """
environments:
  - name: dev
    health: {url: "http://dev.test/", interval: 10s, soak: 20s, failures: 2}
  - name: stage
    approvals: 1
    approvers: [alice, bob, carol]
    health: {url: "http://stage.test/", interval: 10s, soak: 30s, failures: 2}
  - name: production
    approvals: 2
    approvers: [alice, bob, carol]
"""
)
PEOPLE = [
    Person(github="alice"),
    Person(github="bob", slack="U0BOB"),
    Person(slack="U0BOB"),
    Person(github="carol"),
]
SHAS = ["1" * 40, "2" * 40, "3" * 40]
START = datetime(2026, 11, 22, tzinfo=UTC)

events = st.lists(
    st.one_of(
        st.tuples(
            st.just("request"),
            st.sampled_from(["dev", "stage", "production", "qa"]),
            st.sampled_from(PEOPLE),
            st.sampled_from(SHAS),
            st.booleans(),
        ),
        st.tuples(st.just("decide"), st.sampled_from(PEOPLE), st.booleans(), st.booleans()),
        st.tuples(
            st.just("report"),
            st.sampled_from(["in_progress", "success", "failure", "error", "queued"]),
        ),
        st.tuples(st.just("probe"), st.booleans()),
    ),
    max_size=60,
)


class World:
    def __init__(self) -> None:
        self.rollouts: dict[int, Rollout] = {}
        self.next_id = 1
        self.now = START
        self.effects: list = []
        self.refusals: list[str] = []

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def active(self, env: str) -> Rollout | None:
        return next(
            (r for r in self.rollouts.values() if r.environment == env and r.status.active), None
        )

    def last_good(self, env: str) -> str | None:
        done = [
            r for r in self.rollouts.values() if r.environment == env and r.status is Status.SUCCESS
        ]
        return max(done, key=lambda r: r.id).commit_sha if done else None

    def succeeded(self, sha: str) -> frozenset[str]:
        return frozenset(
            r.environment
            for r in self.rollouts.values()
            if r.commit_sha == sha and r.status is Status.SUCCESS
        )

    def apply(self, outcome) -> None:
        for rollout in outcome.rollouts:
            self.rollouts[rollout.id] = rollout
        self.effects.extend(outcome.effects)
        if outcome.refusal:
            self.refusals.append(outcome.refusal)

    def release(self, sha: str) -> Release:
        return Release(id=1, repository="acme/api", commit_sha=sha, pr_number=1)

    def step(self, event: tuple) -> None:
        self.now += timedelta(seconds=10)
        kind = event[0]
        if kind == "request":
            _, env, who, sha, force = event
            self.apply(
                request_deploy(
                    pipeline=PIPELINE,
                    release=self.release(sha),
                    environment=env,
                    requester=who,
                    target=EnvironmentHistory(active=self.active(env.lower())),
                    succeeded_here=self.succeeded(sha),
                    rollout_id=self.new_id(),
                    now=self.now,
                    force=force,
                )
            )
            return
        candidates = sorted(self.rollouts.values(), key=lambda r: -r.id)
        if kind == "decide":
            _, who, approve, authorised = event
            waiting = [r for r in candidates if r.status is Status.AWAITING_APPROVAL]
            if waiting:
                r = waiting[0]
                self.apply(
                    decide(
                        pipeline=PIPELINE,
                        release=self.release(r.commit_sha),
                        rollout=r,
                        person=who,
                        approve=approve,
                        authorised=authorised,
                        now=self.now,
                    )
                )
        elif kind == "report":
            live = [r for r in candidates if r.status in {Status.PENDING, Status.IN_PROGRESS}]
            if live:
                r = live[0]
                replaced = self.rollouts.get(r.replaces) if r.replaces else None
                self.apply(
                    deployment_reported(
                        pipeline=PIPELINE,
                        release=self.release(r.commit_sha),
                        rollout=r,
                        state=event[1],
                        now=self.now,
                        last_good_sha=self.last_good(r.environment),
                        rollback_id=self.new_id(),
                        replaced=replaced,
                    )
                )
        elif kind == "probe":
            verifying = [r for r in candidates if r.status is Status.VERIFYING]
            if verifying:
                r = verifying[0]
                self.apply(
                    probed(
                        pipeline=PIPELINE,
                        release=self.release(r.commit_sha),
                        rollout=r,
                        evidence=Evidence(event[1], "probe", self.now),
                        now=self.now,
                        last_good_sha=self.last_good(r.environment),
                        rollback_id=self.new_id(),
                    )
                )


@settings(max_examples=300, deadline=None)
@given(events)
def test_never_two_active_rollouts_in_one_environment(sequence) -> None:
    world = World()
    for event in sequence:
        world.step(event)
        for env in ("dev", "stage", "production"):
            active = [
                r for r in world.rollouts.values() if r.environment == env and r.status.active
            ]
            assert len(active) <= 1, active


@settings(max_examples=300, deadline=None)
@given(events)
def test_never_a_self_approval_and_every_deployment_was_approved_enough(sequence) -> None:
    world = World()
    for event in sequence:
        world.step(event)
    for r in world.rollouts.values():
        assert not any(d.person.same_as(r.requested_by) for d in r.decisions)
        people = [d.person for d in r.approvals()]
        assert all(not a.same_as(b) for i, a in enumerate(people) for b in people[i + 1 :])
    deployed = {e.rollout_id for e in world.effects if isinstance(e, CreateDeployment)}
    for rollout_id in deployed:
        r = world.rollouts[rollout_id]
        env = PIPELINE.environment(r.environment)
        if r.kind is Kind.DEPLOY:
            assert len(r.approvals()) >= env.approvals


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_failure_ends_in_a_rollback_or_a_stated_reason(sequence) -> None:
    world = World()
    for event in sequence:
        world.step(event)
    texts = [e.text for e in world.effects if isinstance(e, ThreadReply)]
    for r in world.rollouts.values():
        if r.status is not Status.FAILURE or r.kind is not Kind.DEPLOY:
            continue
        rollbacks = [b for b in world.rollouts.values() if b.replaces == r.id]
        assert len(rollbacks) <= 1
        if not rollbacks:
            assert any("No automatic rollback" in t for t in texts)
