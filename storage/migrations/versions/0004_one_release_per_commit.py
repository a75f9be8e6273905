"""one release per commit deployed without a pull request

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Two `/deploy owner/repo@ref` requests that raced could each create a release for the same
commit (`pr_number` NULL, which the `(repository, pr_number)` constraint never compares).
Before the partial unique index goes on, such duplicates are merged into the oldest: their
rollouts move to it, it takes their Slack thread if it had none, and they are deleted.
Effects still waiting for a deleted release find no release and are skipped by the
dispatcher; the kept release's thread carries on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMIT_RELEASE = "pr_number IS NULL"

release = sa.table(
    "release",
    sa.column("id", sa.Integer()),
    sa.column("repository", sa.String()),
    sa.column("commit_sha", sa.String()),
    sa.column("pr_number", sa.Integer()),
    sa.column("thread_channel", sa.String()),
    sa.column("thread_ts", sa.String()),
)
rollout = sa.table(
    "rollout",
    sa.column("id", sa.Integer()),
    sa.column("release_id", sa.Integer()),
)


def _merge_duplicates() -> None:
    bind = op.get_bind()
    duplicated = bind.execute(
        sa.select(release.c.repository, release.c.commit_sha)
        .where(release.c.pr_number.is_(None))
        .group_by(release.c.repository, release.c.commit_sha)
        .having(sa.func.count() > 1)
    ).all()
    for repository, commit_sha in duplicated:
        rows = bind.execute(
            sa.select(release.c.id, release.c.thread_channel, release.c.thread_ts)
            .where(
                release.c.repository == repository,
                release.c.commit_sha == commit_sha,
                release.c.pr_number.is_(None),
            )
            .order_by(release.c.id)
        ).all()
        keep, others = rows[0], rows[1:]
        if keep.thread_ts is None:
            threaded = next((row for row in others if row.thread_ts is not None), None)
            if threaded is not None:
                bind.execute(
                    sa.update(release)
                    .where(release.c.id == keep.id)
                    .values(thread_channel=threaded.thread_channel, thread_ts=threaded.thread_ts)
                )
        other_ids = [row.id for row in others]
        bind.execute(
            sa.update(rollout).where(rollout.c.release_id.in_(other_ids)).values(release_id=keep.id)
        )
        bind.execute(sa.delete(release).where(release.c.id.in_(other_ids)))


def upgrade() -> None:
    _merge_duplicates()
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.create_index(
            "ux_release_commit",
            ["repository", "commit_sha"],
            unique=True,
            sqlite_where=sa.text(_COMMIT_RELEASE),
            postgresql_where=sa.text(_COMMIT_RELEASE),
        )


def downgrade() -> None:
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.drop_index("ux_release_commit")
