"""What GitHub event handlers share: the App client, where the pipeline file lives, the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.github.payloads import RepositoryRef
from bot.pipeline.config import Environment, GitHubTeam, Pipeline, PipelineError, parse_pipeline
from bot.pipeline.policy import needs_admin_check, teams_to_check
from integrations.github_app import Deployment, GitHubApp, InstallationClient
from storage import subscriptions
from storage.models import utcnow


@dataclass
class Context:
    github: GitHubApp
    config_path: str = ".github/deploybot.yml"
    clock: Callable[[], datetime] = field(default=utcnow)

    def client(self, installation_id: int) -> InstallationClient:
        return self.github.installation(installation_id)

    async def read_pipeline(self, installation_id: int, repository: RepositoryRef) -> str:
        """The pipeline file's text on the default branch (never a PR's head); "" if none."""
        owner, name = repository.owner_and_name
        text = await self.client(installation_id).get_file(
            owner=owner, repo=name, path=self.config_path, ref=repository.default_branch
        )
        return text or ""


def parsed(text: str) -> Pipeline | PipelineError:
    try:
        return parse_pipeline(text)
    except PipelineError as error:
        return error


async def thread_channel(
    session: AsyncSession, *, repository: str, pipeline: Pipeline | PipelineError
) -> str | None:
    """Where a repository's threads go: the pipeline file's `slack.channel`, else the channel
    subscribed with `/deploy subscribe`."""
    if isinstance(pipeline, Pipeline) and pipeline.slack is not None:
        return pipeline.slack.channel
    return await subscriptions.channel_of(session, repository=repository)


async def approver_facts(
    client: InstallationClient,
    *,
    repository: str,
    env: Environment,
    login: str | None,
    permission: str | None = None,
) -> tuple[frozenset[GitHubTeam], bool]:
    """Which of the environment's approver teams `login` is in, and whether they administer
    the repository: the GitHub facts `policy.may_approve` decides with."""
    if not login:
        return frozenset(), False
    owner, name = repository.split("/", 1)
    teams = frozenset(
        [
            team
            for team in teams_to_check(env)
            if await client.team_member(org=team.org, team_slug=team.slug, username=login)
        ]
    )
    is_admin = False
    if needs_admin_check(env):
        if permission is None:  # the caller may have looked it up already
            permission = await client.get_permission(owner=owner, repo=name, username=login)
        is_admin = permission == "admin"
    return teams, is_admin


async def github_last_good(
    client: InstallationClient, *, repository: str, environment: str, other_than: str
) -> str | None:
    """The newest commit GitHub records as successfully deployed to `environment` (other than
    `other_than`): the rollback target when deploybot's own records have none, e.g. for
    deploys made before it was installed."""
    found = await github_good_commits(
        client, repository=repository, environment=environment, other_than=other_than, limit=1
    )
    return found[0].sha if found else None


async def github_good_commits(
    client: InstallationClient,
    *,
    repository: str,
    environment: str,
    other_than: str,
    limit: int,
) -> list[Deployment]:
    """GitHub's deployments to `environment` that succeeded, newest first, one per commit."""
    owner, name = repository.split("/", 1)
    found: list[Deployment] = []
    for deployment in await client.list_deployments(
        owner=owner, repo=name, environment=environment
    ):
        if deployment.sha == other_than or any(d.sha == deployment.sha for d in found):
            continue
        statuses = await client.list_deployment_statuses(
            owner=owner, repo=name, deployment_id=deployment.id
        )
        # GitHub marks older successful deployments `inactive` after a newer one: any
        # `success` in the history means the commit ran there.
        if any(status.state == "success" for status in statuses):
            found.append(deployment)
            if len(found) >= limit:
                break
    return found
