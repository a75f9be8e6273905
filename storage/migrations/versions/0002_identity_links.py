"""identity links; who subscribed a channel on GitHub

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slack_user", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("github_login", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("confirmed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pending_login", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("code_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("code_expires_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_link")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_identity_link_code_hash")),
        sa.UniqueConstraint("slack_user", name=op.f("uq_identity_link_slack_user")),
    )
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_link_github_login"), ["github_login"], unique=False
        )
    with op.batch_alter_table("channelsubscription", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_by_github", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("channelsubscription", schema=None) as batch_op:
        batch_op.drop_column("created_by_github")
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_link_github_login"))
    op.drop_table("identity_link")
