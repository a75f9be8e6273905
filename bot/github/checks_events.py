"""Check results arriving (`status`, `check_suite` and `check_run` completed, `workflow_run`
completed): requests queued with `--wait` for that commit are looked at on the next tick
instead of after their one-minute wait. The verdict itself is always read from GitHub by
the scheduler, never taken from the delivery (a delivery says one check, not all)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.github.context import Context
from bot.worker import Apply
from storage import releases

EVENTS = ("status", "check_suite", "check_run", "workflow_run")


def _commit(event: str, payload: dict[str, Any]) -> str | None:
    if event == "status":
        sha = payload.get("sha")
    else:
        if payload.get("action") != "completed":
            return None
        sha = (payload.get(event) or {}).get("head_sha")
    return sha if isinstance(sha, str) and sha else None


def handler(event: str) -> Callable[[Context, dict[str, Any]], Awaitable[Apply | None]]:
    """The inbox handler for one of the check events."""

    async def handle(_context: Context, payload: dict[str, Any]) -> Apply | None:
        sha = _commit(event, payload)
        repository = (payload.get("repository") or {}).get("full_name")
        if sha is None or not isinstance(repository, str):
            return None

        async def apply(session: AsyncSession) -> None:
            await releases.wake_queue(session, repository=repository, commit_sha=sha)

        return apply

    return handle
