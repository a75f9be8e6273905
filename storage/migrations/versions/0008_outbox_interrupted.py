"""outbox rows remember whether their last claim took them from an owner that died

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22

A Slack message has no idempotency key: an effect whose sender died after Slack took the
message but before the row was marked sent is looked up in Slack before it is posted again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("interrupted", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("interrupted")
