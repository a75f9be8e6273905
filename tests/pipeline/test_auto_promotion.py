"""Auto-promotion chains (pure): which environment deploys on its own, and when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import ThreadReply
from bot.pipeline.machine import (
    Outcome,
    Release,
    deployed_on_merge,
    held_back,
    promoted_on_success,
)
from bot.pipeline.models import Kind, Person, Rollout, Status

CHAIN = parse_pipeline(
    """
environments:
  - {name: dev, auto: true}
  - {name: stage, auto: true}
  - {name: regression, auto: true}
  - {name: production, approvals: 1}
"""
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SHA, OLD = "a" * 40, "b" * 40
RELEASE = Release(id=7, repository="acme/api", commit_sha=SHA, pr_number=42)


def done(environment: str, *, status=Status.SUCCESS, kind=Kind.DEPLOY, sha=SHA) -> Outcome:
    rollout = Rollout(
        id=1,
        repository="acme/api",
        environment=environment,
        commit_sha=sha,
        status=status,
        requested_by=Person(github="alice"),
        created_at=NOW,
        kind=kind,
    )
    return Outcome(rollouts=(rollout,))


@pytest.mark.parametrize(
    ("outcome", "following"),
    [
        (done("dev"), "stage"),
        (done("stage"), "regression"),
        (done("regression"), None),  # production is manual
        (done("production"), None),  # the last one
        (done("dev", status=Status.VERIFYING), None),  # not succeeded yet
        (done("dev", status=Status.FAILURE), None),
        (done("dev", kind=Kind.ROLLBACK), None),  # a rollback never promotes
        (done("dev", sha=OLD), None),  # the release moved on: never promote an older commit
        (done("gone"), None),  # an environment no longer in the file
        (Outcome(), None),
    ],
)
def test_what_succeeds_promotes_to_the_next_auto_environment(
    outcome: Outcome, following: str | None
) -> None:
    assert promoted_on_success(CHAIN, RELEASE, outcome) == following


def test_a_merge_deploys_the_first_environment_only_when_it_is_auto() -> None:
    assert deployed_on_merge(CHAIN) == "dev"
    assert deployed_on_merge(parse_pipeline("")) is None  # the default pipeline is manual
    manual_first = parse_pipeline("environments: [{name: dev}, {name: stage, auto: true}]")
    assert deployed_on_merge(manual_first) is None


def test_a_held_back_deploy_says_why_once_per_commit() -> None:
    outcome = held_back(RELEASE, "stage", "`stage` is locked by bob.")
    (reply,) = outcome.effects
    assert isinstance(reply, ThreadReply)
    assert reply.text == "Not deploying aaaaaaa to `stage` on its own: `stage` is locked by bob."
    assert reply.key == held_back(RELEASE, "stage", "another reason").effects[0].key
    assert not outcome.rollouts and not outcome.refused
