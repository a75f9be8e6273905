"""Who may approve, and how GitHub and Slack identities are joined (pure)."""

import pytest

from bot.pipeline.config import GitHubTeam, parse_pipeline
from bot.pipeline.models import Person
from bot.pipeline.policy import (
    identify,
    may_approve,
    needs_admin_check,
    needs_confirmation,
    permits,
    teams_to_check,
)

PIPELINE = parse_pipeline(
    """
users:
  alice: U0ALICE
  bob: U0BOB
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [bob, U0CAROL, "@acme/sre"]
"""
)
PRODUCTION = PIPELINE.environment("production")
STAGE = PIPELINE.environment("stage")
SRE = GitHubTeam(org="acme", slug="sre")


def test_identities_are_joined_through_the_users_map() -> None:
    assert identify(PIPELINE, github="alice") == Person(github="alice", slack="U0ALICE")
    assert identify(PIPELINE, slack="U0BOB") == Person(github="bob", slack="U0BOB")
    assert identify(PIPELINE, slack="U0NOBODY") == Person(slack="U0NOBODY")


@pytest.mark.parametrize(
    ("person", "member_of", "allowed"),
    [
        (Person(github="bob"), (), True),
        (Person(github="BOB"), (), True),
        (Person(slack="U0BOB"), (), False),  # not joined: identify() first
        (Person(slack="U0CAROL"), (), True),
        (Person(github="carol"), (), False),  # listed by Slack id only
        (Person(github="dave"), (SRE,), True),
        (Person(github="dave"), (), False),
        (Person(slack="U0DAVE"), (SRE,), False),  # team membership needs a GitHub login
    ],
)
def test_listed_people_and_team_members_may_approve(person, member_of, allowed) -> None:
    assert may_approve(PRODUCTION, person, member_of=member_of) is allowed


def test_without_approvers_repository_admins_approve() -> None:
    assert needs_admin_check(STAGE) and not needs_admin_check(PRODUCTION)
    assert may_approve(STAGE, Person(github="erin"), is_admin=True)
    assert not may_approve(STAGE, Person(github="erin"), is_admin=False)
    assert teams_to_check(PRODUCTION) == (SRE,)


@pytest.mark.parametrize(
    ("text", "environment", "confirm"),
    [
        (None, "production", True),  # the default pipeline: last, and needs an approval
        (None, "stage", False),
        (None, "dev", False),
        ("environments: [{name: a}, {name: b}]", "b", True),  # last in promotion order
        ("environments: [{name: a, approvals: 1}, {name: b}]", "A", True),
        ("environments: [{name: a}, {name: b}]", "nowhere", False),
    ],
)
def test_production_like_environments_ask_for_confirmation(
    text: str | None, environment: str, confirm: bool
) -> None:
    pipeline = parse_pipeline(text or "")
    assert needs_confirmation(pipeline, environment) is confirm


@pytest.mark.parametrize(
    ("permission", "needed", "allowed"),
    [
        ("admin", "write", True),
        ("maintain", "write", True),
        ("write", "write", True),
        ("triage", "write", False),
        ("read", "read", True),
        ("none", "read", False),
        ("owner", "read", False),  # not a GitHub role: permits nothing
        ("write", "admin", False),
    ],
)
def test_permits_orders_github_roles(permission: str, needed: str, allowed: bool) -> None:
    assert permits(permission, needed) is allowed
