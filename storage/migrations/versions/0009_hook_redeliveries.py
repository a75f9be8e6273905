"""failed webhook deliveries the reconciler asked GitHub to redeliver

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22

Table `hook_redelivery`, one row per delivery attempt (GitHub's delivery id) the reconciler
claimed, with its guid and when the redelivery was asked for, so no attempt is asked for
twice, by the next run or by another replica.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hook_redelivery",
        sa.Column("delivery_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("guid", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("delivered_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("claimed_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("requested_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_hook_redelivery")),
    )
    with op.batch_alter_table("hook_redelivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hook_redelivery_guid"), ["guid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hook_redelivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hook_redelivery_guid"))
    op.drop_table("hook_redelivery")
