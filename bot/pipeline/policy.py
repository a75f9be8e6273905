"""Who may do what (pure): identities across GitHub and Slack, approvers, deploy windows."""

from __future__ import annotations

from collections.abc import Collection

from bot.pipeline.config import Environment, GitHubTeam, GitHubUser, Pipeline, RepoAdmins, SlackUser
from bot.pipeline.models import Person


def identify(pipeline: Pipeline, *, github: str | None = None, slack: str | None = None) -> Person:
    """A person with both identities filled in from the pipeline file's trusted `users:` map."""
    if github and not slack:
        slack = pipeline.slack_user_for(github)
    if slack and not github:
        github = next((login for login, user in pipeline.users.items() if user == slack), None)
    return Person(github=github, slack=slack)


def teams_to_check(env: Environment) -> tuple[GitHubTeam, ...]:
    """The teams whose membership the caller must look up to decide on an approver."""
    return tuple(a for a in env.approvers if isinstance(a, GitHubTeam))


def needs_admin_check(env: Environment) -> bool:
    return any(isinstance(a, RepoAdmins) for a in env.approvers)


def may_approve(
    env: Environment,
    person: Person,
    *,
    member_of: Collection[GitHubTeam] = (),
    is_admin: bool = False,
) -> bool:
    """Is `person` one of the environment's approvers? The caller looked up, through GitHub,
    which of `teams_to_check(env)` they belong to and whether they administer the repository.
    """
    for approver in env.approvers:
        if isinstance(approver, GitHubUser):
            if person.github and person.github.lower() == approver.login:
                return True
        elif isinstance(approver, SlackUser):
            if person.slack == approver.user_id:
                return True
        elif isinstance(approver, GitHubTeam):
            if person.github and approver in member_of:
                return True
        elif isinstance(approver, RepoAdmins) and person.github and is_admin:
            return True
    return False


def needs_confirmation(pipeline: Pipeline, environment: str) -> bool:
    """Production-like environments (the last in promotion order, or any that needs
    approvals) ask people to confirm a deploy or rollback before it starts."""
    env = pipeline.environment(environment)
    if env is None:
        return False
    return env.approvals > 0 or env.name == pipeline.environments[-1].name


# GitHub's repository roles, weakest first (the collaborator permission API's names).
_ROLES = ("none", "read", "triage", "write", "maintain", "admin")


def permits(permission: str, needed: str) -> bool:
    """Whether a GitHub role (`write`, ...) is at least `needed`; unknown roles permit
    nothing."""
    have = _ROLES.index(permission) if permission in _ROLES else 0
    return have >= _ROLES.index(needed)


def may_force(
    env: Environment,
    person: Person,
    *,
    member_of: Collection[GitHubTeam] = (),
    is_admin: bool = False,
) -> bool:
    """May `person` use `--force` on `env` (override its ordering rule, window, freeze,
    checks and locks)? The people listed as its approvers may, and repository admins."""
    return (is_admin and person.github is not None) or may_approve(
        env, person, member_of=member_of, is_admin=is_admin
    )
