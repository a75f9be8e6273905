"""rollout progress: canary weight, pause, manual hold, queue flags, protection-rule gate

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

`canary_step` existed since 0001; `canary_weight` is the weight of that step as it was
deployed (the pipeline file may change under it). `paused_at` stops a rollout's timers,
`held_at` marks a verified manual canary step waiting for promote. A queued rollout keeps
whether it was asked with `--force` or `--wait`. `gate_run_id` is the GitHub Actions run
that waits on the App's deployment protection rule.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.add_column(sa.Column("canary_weight", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("paused_at", storage.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("held_at", storage.models.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("wait_checks", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("gate_run_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        for column in (
            "gate_run_id",
            "wait_checks",
            "forced",
            "held_at",
            "paused_at",
            "canary_weight",
        ):
            batch_op.drop_column(column)
