"""`deployment_status`: the deploy system reports on a deployment the bot created."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import conductor
from bot.github.context import Context, github_last_good
from bot.github.payloads import DeploymentStatusEvent, parse
from bot.worker import Apply
from integrations.github_app import GitHubError

FAILED = {"failure", "error"}


async def handle(context: Context, payload: dict[str, Any]) -> Apply:
    event = parse(DeploymentStatusEvent, payload)
    github_good_sha = None
    if event.deployment_status.state in FAILED and event.installation is not None:
        # A failure may roll back; in case our records know no good commit, ask GitHub now
        # (outside the transaction). A failure to ask just means no fallback.
        try:
            github_good_sha = await github_last_good(
                context.client(event.installation.id),
                repository=event.repository.full_name,
                environment=event.deployment.environment,
                other_than=event.deployment.sha,
            )
        except GitHubError:
            github_good_sha = None

    async def apply(session: AsyncSession) -> None:
        # A deployment the bot did not create (someone else's, or another tool's) is ignored.
        await conductor.report(
            session,
            deployment_id=event.deployment.id,
            state=event.deployment_status.state,
            now=context.clock(),
            description=event.deployment_status.description,
            github_good_sha=github_good_sha,
            named_rollout=event.deployment.rollout_id,
            named_step=event.deployment.canary_step,
            commit_sha=event.deployment.sha,
        )

    return apply
