"""Channel subscriptions: which Slack channel carries a repository's threads."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage import db
from storage.models import ChannelSubscription, utcnow
from storage.models import Release as ReleaseRow


async def channel_of(session: AsyncSession, *, repository: str) -> str | None:
    result = await session.execute(
        sa.select(ChannelSubscription.channel_id).where(
            ChannelSubscription.repository == repository
        )
    )
    return result.scalar_one_or_none()


async def subscribe(
    session: AsyncSession, *, repository: str, channel: str, slack_user: str, github_login: str
) -> str | None:
    """Make `channel` the repository's thread channel; returns the channel it replaced.
    Releases that have no thread yet will open theirs there."""
    previous = await channel_of(session, repository=repository)
    values = {
        "channel_id": channel,
        "created_by": slack_user,
        "created_by_github": github_login,
        "created_at": utcnow(),
    }
    await session.execute(
        db.insert(session, ChannelSubscription)
        .values(repository=repository, **values)
        .on_conflict_do_update(index_elements=["repository"], set_=values)
    )
    await session.execute(
        sa.update(ReleaseRow)
        .where(ReleaseRow.repository == repository, ReleaseRow.thread_ts.is_(None))
        .values(thread_channel=channel)
    )
    return previous if previous != channel else None


async def unsubscribe(session: AsyncSession, *, repository: str) -> str | None:
    """Forget the repository's channel; returns it (None: there was none). Threads already
    open stay where they are; new ones have nowhere to go until someone subscribes again."""
    previous = await channel_of(session, repository=repository)
    await session.execute(
        sa.delete(ChannelSubscription).where(ChannelSubscription.repository == repository)
    )
    if previous is not None:
        await session.execute(
            sa.update(ReleaseRow)
            .where(
                ReleaseRow.repository == repository,
                ReleaseRow.thread_ts.is_(None),
                ReleaseRow.thread_channel == previous,
            )
            .values(thread_channel=None)
        )
    return previous
