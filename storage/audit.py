"""The audit log: who did what, when, from where (`slack`, `github`, `api`, `scheduler`),
to which repository, environment and commit; refusals and overrides included.

Entries are written in the transaction of the decision they record, so one exists exactly
when the decision was saved (a refusal that saves nothing is written on its own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEvent, utcnow

SOURCES = ("slack", "github", "api", "scheduler")


def record(
    session: AsyncSession,
    *,
    actor: str,
    source: str,
    action: str,
    repository: str | None = None,
    environment: str | None = None,
    commit_sha: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Add one entry to the session (written when it commits)."""
    if source not in SOURCES:
        raise ValueError(f"unknown audit source {source!r}; expected one of {SOURCES}")
    session.add(
        AuditEvent(
            at=at or utcnow(),
            actor=actor,
            source=source,
            action=action,
            repository=repository,
            environment=environment,
            commit_sha=commit_sha,
            detail=detail or {},
        )
    )


async def entries(
    session: AsyncSession,
    *,
    since: datetime | None = None,
    repository: str | None = None,
    after: int | None = None,
    limit: int = 1000,
) -> list[AuditEvent]:
    """Entries at or after `since`, in the order they were written (for one repository,
    if given); `after` (an entry's id) pages through them."""
    statement = sa.select(AuditEvent).order_by(AuditEvent.id).limit(limit)
    if after is not None:
        statement = statement.where(AuditEvent.id > after)
    if since is not None:
        statement = statement.where(AuditEvent.at >= since)
    if repository is not None:
        statement = statement.where(sa.func.lower(AuditEvent.repository) == repository.lower())
    return list((await session.execute(statement)).scalars())


def as_json(entry: AuditEvent) -> dict[str, Any]:
    """One entry as a JSON object (a line of the export)."""
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "source": entry.source,
        "action": entry.action,
        "repository": entry.repository,
        "environment": entry.environment,
        "commit_sha": entry.commit_sha,
        "detail": entry.detail,
    }
