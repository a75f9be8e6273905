"""The App Home tab and `/deploy status owner/repo`, drawn from `storage.overview`.

`home_for` reads every subscribed repository in one short session and returns the view for
`views.publish`. The rest is pure: an overview becomes the builders' `RepositoryStatus`, with
the same buttons (action ids, values and confirmations) as a thread's status board.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline.commands import SLACK_USAGE
from bot.pipeline.models import Kind, Status
from bot.slack import blocks
from bot.slack.blocks import (
    ApprovalNote,
    Button,
    EnvironmentStatus,
    LockNote,
    Message,
    RepositoryStatus,
    escape,
)
from bot.slack.board import confirms
from storage.overview import (
    EnvironmentOverview,
    RepositoryOverview,
    environments_of,
    subscribed_repositories,
)

log = structlog.get_logger(__name__)

# Each repository takes at least two of the tab's 100 blocks: reading more is wasted work.
MAX_HOME_REPOSITORIES = 48

_ROLLBACK_FROM = frozenset({Status.SUCCESS, Status.FAILURE, Status.VERIFYING})


async def home_for(
    sessions: async_sessionmaker[AsyncSession],
    *,
    user: str,
    may_read: Callable[[RepositoryOverview], Awaitable[bool]],
    team_url: str | None = None,
    notice: str | None = None,
) -> dict[str, Any]:
    """The App Home view for `user`: every subscribed repository they may read on GitHub
    (`may_read`), so a private repository's releases show only to its own people.

    `team_url` (from `auth.test`) makes thread links open in the workspace directly.
    `notice` (our own mrkdwn) answers the click that republished the tab. A broken pipeline
    file shows as a note on its repository; a database error gives the tab without
    repositories and a note, so publishing never fails because of what is stored.
    """
    usage = escape(SLACK_USAGE)
    try:
        async with sessions() as session:
            names = await subscribed_repositories(session)
            overviews = [
                await environments_of(session, repository=name)
                for name in names[:MAX_HOME_REPOSITORIES]
            ]
    except SQLAlchemyError as exc:
        log.warning("home tab: reading repositories failed", user=user, error=str(exc))
        return blocks.home_view(
            "Could not read the repositories just now; open the tab again in a minute.\n\n" + usage,
            notice=notice,
        )
    readable = await asyncio.gather(*(may_read(overview) for overview in overviews))
    shown = [o for o, ok in zip(overviews, readable, strict=True) if ok]
    statuses = [repository_status_of(o, buttons=True, team_url=team_url) for o in shown]
    more = max(len(names) - len(overviews), 0) if shown else 0
    return blocks.home_view(usage, statuses, more=more, notice=notice)


def status_message(overview: RepositoryOverview, *, team_url: str | None = None) -> Message:
    """The reply to `/deploy status owner/repo`: the compact board, without buttons."""
    return blocks.repository_status(
        repository_status_of(overview, buttons=False, team_url=team_url)
    )


def repository_status_of(
    overview: RepositoryOverview, *, buttons: bool, team_url: str | None = None
) -> RepositoryStatus:
    """What the builders show for a repository; `buttons` adds the thread board's buttons
    (none while the pipeline file is invalid: every click would be refused)."""
    problem = None
    if overview.pipeline_error is not None:
        lines = overview.pipeline_error.splitlines() or [""]
        problem = lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")
    by_name = {env.name.lower(): env for env in overview.environments}
    return RepositoryStatus(
        repository=overview.repository,
        environments=tuple(
            _environment(
                overview,
                env,
                by_name,
                buttons=buttons and overview.pipeline_error is None,
                team_url=team_url,
            )
            for env in overview.environments
        ),
        problem=problem,
    )


def _environment(
    overview: RepositoryOverview,
    env: EnvironmentOverview,
    by_name: dict[str, EnvironmentOverview],
    *,
    buttons: bool,
    team_url: str | None,
) -> EnvironmentStatus:
    current = env.current
    lock = env.lock
    pending = env.pending
    earlier = env.last if env.active is not None else None
    release = current.release if current is not None else None
    return EnvironmentStatus(
        name=env.name,
        status=current.status.value if current is not None else None,
        commit_sha=current.commit_sha if current is not None else None,
        requested_by=current.requested_by.label if current is not None else None,
        updated_at=current.updated_at if current is not None else None,
        pr_number=release.pr_number if release is not None else None,
        title=release.title if release is not None else None,
        pr_url=release.pr_url if release is not None else None,
        thread_url=blocks.thread_url(release.thread_channel, release.thread_ts, team_url=team_url)
        if release is not None
        else None,
        last_status=earlier.status.value if earlier is not None else None,
        last_sha=earlier.commit_sha if earlier is not None else None,
        lock=LockNote(
            holder=lock.holder.label,
            since=lock.since,
            expires_at=lock.expires_at,
            reason=lock.reason,
        )
        if lock is not None
        else None,
        approval=ApprovalNote(
            given=pending.given,
            needed=pending.needed,
            approved_by=tuple(p.label for p in pending.approved_by),
        )
        if pending is not None
        else None,
        buttons=_buttons(overview, env, by_name) if buttons else (),
    )


def _buttons(
    overview: RepositoryOverview,
    env: EnvironmentOverview,
    by_name: dict[str, EnvironmentOverview],
) -> tuple[Button, ...]:
    """The thread board's rules (`bot.slack.board._line`) for what holds or last finished in
    the environment, plus Approve / Reject while it waits for approval."""
    current = env.current
    if current is None:
        return ()
    rollout, release = current.rollout, current.release
    found: list[Button] = []
    if env.pending is not None:
        value = f"rollout:{env.pending.rollout_id}"
        found += [Button("approve", value), Button("reject", value)]
    next_env = overview.next_environment(env.name)
    if (
        rollout.kind is Kind.DEPLOY
        and rollout.status is Status.SUCCESS
        and next_env is not None
        and rollout.commit_sha == release.commit_sha
        and not _already_there(by_name.get(next_env.lower()), rollout.commit_sha)
    ):
        found.append(
            Button(
                "promote",
                f"promote:{release.id}:{next_env}",
                confirm=confirms(overview.pipeline, next_env),
                target=next_env,
            )
        )
    if rollout.kind is Kind.DEPLOY and rollout.status in _ROLLBACK_FROM:
        found.append(Button("rollback", f"rollback:{release.id}:{env.name}"))
    if confirms(overview.pipeline, env.name):  # production: every button asks first
        found = [Button(b.action, b.value, confirm=True, target=b.target) for b in found]
    return tuple(found)


def _already_there(env: EnvironmentOverview | None, commit_sha: str) -> bool:
    """The next environment already runs (or is getting) this commit: promoting adds nothing."""
    current = env.current if env is not None else None
    return (
        current is not None
        and current.commit_sha == commit_sha
        and (current.status is Status.SUCCESS or current.status.active)
    )
