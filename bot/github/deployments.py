"""`deployment_status`: the deploy system reports on a deployment the bot created."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import conductor
from bot.github.context import Context
from bot.github.payloads import DeploymentStatusEvent, parse
from bot.worker import Apply


async def handle(context: Context, payload: dict[str, Any]) -> Apply:
    event = parse(DeploymentStatusEvent, payload)

    async def apply(session: AsyncSession) -> None:
        # A deployment the bot did not create (someone else's, or another tool's) is ignored.
        await conductor.report(
            session,
            deployment_id=event.deployment.id,
            state=event.deployment_status.state,
            now=context.clock(),
            description=event.deployment_status.description,
        )

    return apply
