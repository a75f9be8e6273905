"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auditevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("repository", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("environment", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("commit_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auditevent")),
    )
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auditevent_repository"), ["repository"], unique=False)

    op.create_table(
        "channelsubscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channelsubscription")),
        sa.UniqueConstraint("repository", name=op.f("uq_channelsubscription_repository")),
    )
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("delivery_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("lease_until", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("source", "delivery_id", name=op.f("uq_inbox_source_delivery_id")),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "installation",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_login", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("account_type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_installation_account_login"), ["account_login"], unique=False
        )

    op.create_table(
        "lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("environment", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("holder_github", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("holder_slack", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lock")),
        sa.UniqueConstraint(
            "repository", "environment", name=op.f("uq_lock_repository_environment")
        ),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("lease_until", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "release",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("commit_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("pr_state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pr_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("head_ref", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("thread_channel", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("thread_ts", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release")),
        sa.UniqueConstraint(
            "repository", "pr_number", name=op.f("uq_release_repository_pr_number")
        ),
    )
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_pr_number"), ["pr_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_repository"), ["repository"], unique=False)

    op.create_table(
        "repository",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("full_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("default_branch", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["installation_id"],
            ["installation.id"],
            name=op.f("fk_repository_installation_id_installation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repository")),
        sa.UniqueConstraint("full_name", name=op.f("uq_repository_full_name")),
    )
    with op.batch_alter_table("repository", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_repository_installation_id"), ["installation_id"], unique=False
        )

    op.create_table(
        "rollout",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("repository", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("environment", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("commit_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("github_deployment_id", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("requested_by_github", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("requested_by_slack", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("requested_via", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("replaces", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("failure_streak", sa.Integer(), nullable=False),
        sa.Column("healthy_since", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("canary_step", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("next_check_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("lease_until", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["release.id"], name=op.f("fk_rollout_release_id_release")
        ),
        sa.ForeignKeyConstraint(
            ["replaces"], ["rollout.id"], name=op.f("fk_rollout_replaces_rollout")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout")),
    )
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.create_index("ix_rollout_commit", ["repository", "commit_sha"], unique=False)
        batch_op.create_index("ix_rollout_due", ["status", "next_check_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_rollout_github_deployment_id"), ["github_deployment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_rollout_release_id"), ["release_id"], unique=False)
        batch_op.create_index(
            "ux_rollout_active_environment",
            ["repository", "environment"],
            unique=True,
            sqlite_where=sa.text(
                "status IN ('pending', 'awaiting_approval', 'in_progress', 'verifying')"
            ),
            postgresql_where=sa.text(
                "status IN ('pending', 'awaiting_approval', 'in_progress', 'verifying')"
            ),
        )

    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("approver", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("approver_github", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("approver_slack", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("commit_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollout.id"], name=op.f("fk_approval_rollout_id_rollout")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval")),
        sa.UniqueConstraint("rollout_id", "approver", name=op.f("uq_approval_rollout_id_approver")),
    )
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approval_rollout_id"), ["rollout_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_rollout_id"))

    op.drop_table("approval")
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_rollout_active_environment",
            sqlite_where=sa.text(
                "status IN ('pending', 'awaiting_approval', 'in_progress', 'verifying')"
            ),
            postgresql_where=sa.text(
                "status IN ('pending', 'awaiting_approval', 'in_progress', 'verifying')"
            ),
        )
        batch_op.drop_index(batch_op.f("ix_rollout_release_id"))
        batch_op.drop_index(batch_op.f("ix_rollout_github_deployment_id"))
        batch_op.drop_index("ix_rollout_due")
        batch_op.drop_index("ix_rollout_commit")

    op.drop_table("rollout")
    with op.batch_alter_table("repository", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_repository_installation_id"))

    op.drop_table("repository")
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_repository"))
        batch_op.drop_index(batch_op.f("ix_release_pr_number"))

    op.drop_table("release")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox")
    op.drop_table("lock")
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_installation_account_login"))

    op.drop_table("installation")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_due")

    op.drop_table("inbox")
    op.drop_table("channelsubscription")
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auditevent_repository"))

    op.drop_table("auditevent")
