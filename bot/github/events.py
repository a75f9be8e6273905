"""GitHub deliveries → what deploybot does with them.

Each handler reads what it needs first (GitHub calls, outside any transaction) and returns
the writes to make (`Apply`), which the inbox worker runs in one transaction with marking
the delivery done. Events and actions without a handler return None: recorded as ignored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.github import checks_events, comments, deployments, protection, pulls
from bot.github.context import Context
from bot.github.payloads import InstallationEvent, InstallationRepositoriesEvent, parse
from bot.worker import Apply
from storage import installations
from storage.installations import RepositoryRef
from storage.models import InboxItem

Handler = Callable[[Context, dict[str, Any]], Awaitable[Apply | None]]


async def _installation(_context: Context, payload: dict[str, Any]) -> Apply:
    event = parse(InstallationEvent, payload)
    owner = event.installation.owner
    granted = [RepositoryRef(r.id, r.full_name) for r in event.repositories or ()]

    async def apply(session: AsyncSession) -> None:
        await installations.upsert_installation(
            session,
            installation_id=event.installation.id,
            account_login=owner.login,
            account_type=owner.type,
            suspended=event.action == "suspend",
            removed=event.action == "deleted",
        )
        if event.action == "created":
            await installations.add_repositories(
                session, installation_id=event.installation.id, repositories=granted
            )
        if event.action == "deleted":
            await installations.remove_repositories(
                session,
                installation_id=event.installation.id,
                repository_ids=[r.id for r in granted],
            )

    return apply


async def _installation_repositories(_context: Context, payload: dict[str, Any]) -> Apply:
    event = parse(InstallationRepositoriesEvent, payload)
    owner = event.installation.owner

    async def apply(session: AsyncSession) -> None:
        await installations.upsert_installation(
            session,
            installation_id=event.installation.id,
            account_login=owner.login,
            account_type=owner.type,
        )
        await installations.add_repositories(
            session,
            installation_id=event.installation.id,
            repositories=[RepositoryRef(r.id, r.full_name) for r in event.repositories_added],
        )
        await installations.remove_repositories(
            session,
            installation_id=event.installation.id,
            repository_ids=[r.id for r in event.repositories_removed],
        )

    return apply


async def _ping(_context: Context, _payload: dict[str, Any]) -> Apply:
    async def apply(_session: AsyncSession) -> None:
        return None

    return apply


HANDLERS: dict[str, Handler] = {
    "installation": _installation,
    "installation_repositories": _installation_repositories,
    "ping": _ping,
    "pull_request": pulls.handle,
    "issue_comment": comments.handle,
    "deployment_status": deployments.handle,
    "deployment_protection_rule": protection.handle,
    **{event: checks_events.handler(event) for event in checks_events.EVENTS},
}


class GitHubEvents:
    """The inbox worker's handler for GitHub deliveries."""

    def __init__(self, context: Context) -> None:
        self.context = context

    async def __call__(self, item: InboxItem, payload: dict[str, Any]) -> Apply | None:
        handler = HANDLERS.get(item.event)
        if handler is None:
            return None
        return await handler(self.context, payload)
