"""repository-wide deploy freezes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

Table `repository_freeze` (`freeze` is a reserved word in PostgreSQL), one row per
repository: who froze it (GitHub login and Slack id), why, until when. A row whose `until`
has passed holds nothing; the next freeze replaces it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "repository_freeze",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("by_github", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("by_slack", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("until", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repository_freeze")),
        sa.UniqueConstraint("repository", name=op.f("uq_repository_freeze_repository")),
    )


def downgrade() -> None:
    op.drop_table("repository_freeze")
