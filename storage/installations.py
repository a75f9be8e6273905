"""Installations of the GitHub App and the repositories each one grants."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Installation, Repository, utcnow


@dataclass(frozen=True)
class RepositoryRef:
    id: int
    full_name: str


async def upsert_installation(
    session: AsyncSession,
    *,
    installation_id: int,
    account_login: str,
    account_type: str,
    suspended: bool = False,
    removed: bool = False,
) -> Installation:
    """Create or refresh an installation row."""
    row = await session.get(Installation, installation_id)
    if row is None:
        row = Installation(id=installation_id, account_login=account_login)
        session.add(row)
    row.account_login = account_login
    row.account_type = account_type
    row.suspended = suspended
    row.removed = removed
    row.updated_at = utcnow()
    await session.flush()
    return row


async def add_repositories(
    session: AsyncSession, *, installation_id: int, repositories: Iterable[RepositoryRef]
) -> None:
    """Grant repositories to an installation (a repository moves if it was granted elsewhere)."""
    for ref in repositories:
        # The name may still be held by a repository GitHub deleted or renamed while we
        # weren't told (a new one can take an old name): retire that row's claim to it.
        await session.execute(
            sa.update(Repository)
            .where(Repository.full_name == ref.full_name, Repository.id != ref.id)
            .values(
                full_name=Repository.full_name + "#" + sa.cast(Repository.id, sa.String),
                removed=True,
                updated_at=utcnow(),
            )
        )
        row = await session.get(Repository, ref.id)
        if row is None:
            row = Repository(id=ref.id, full_name=ref.full_name)
            session.add(row)
        row.full_name = ref.full_name
        row.installation_id = installation_id
        row.removed = False
        row.updated_at = utcnow()
    await session.flush()


async def remove_repositories(
    session: AsyncSession, *, installation_id: int, repository_ids: Iterable[int]
) -> None:
    """Mark repositories no longer granted; their history stays."""
    ids = list(repository_ids)
    if not ids:
        return
    await session.execute(
        sa.update(Repository)
        .where(Repository.id.in_(ids), Repository.installation_id == installation_id)
        .values(removed=True, updated_at=utcnow())
    )


async def installation_for(session: AsyncSession, *, full_name: str) -> int | None:
    """The installation that can act on `owner/name`, if the App is installed there now."""
    result = await session.execute(
        sa.select(Repository.installation_id)
        .join(Installation, Installation.id == Repository.installation_id)
        .where(
            Repository.full_name == full_name,
            Repository.removed.is_(False),
            Installation.removed.is_(False),
            Installation.suspended.is_(False),
        )
    )
    return result.scalar_one_or_none()


async def find_repository(session: AsyncSession, *, name: str) -> Repository | None:
    """The installed repository `owner/name` (as people type it: any case)."""
    result = await session.execute(
        sa.select(Repository)
        .join(Installation, Installation.id == Repository.installation_id)
        .where(
            sa.func.lower(Repository.full_name) == name.lower(),
            Repository.removed.is_(False),
            Installation.removed.is_(False),
            Installation.suspended.is_(False),
        )
    )
    return result.scalar_one_or_none()
